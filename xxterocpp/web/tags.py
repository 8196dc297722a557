# -*- test-case-name: tests.test_web_routes,tests.test_attacks_web -*-
"""
The API's tags: C{/api/tags} lists the tag registry's tags, C{/api/tags/{id}}
reads (GET), adds or changes (PUT C{{"status", "expiry", "parent"}}) and
removes (DELETE) one. The registry (L{xxterocpp.domain.tags}) keeps and
persists them; a tag of the configuration file is read-only here (409).
"""

from twisted.internet import defer

from xxterocpp.store import TagRecord
from xxterocpp.web import parse
from xxterocpp.web.reply import HttpError
from xxterocpp.web.status import iso


def tag_json(tag):
    """
    @return: a tag of the registry as the API shows it; C{source} says
        whether the API or the configuration file gave it.
    """
    return {
        "id": tag.id,
        "status": tag.status,
        "expiry": iso(tag.expiry),
        "parent": tag.parent,
        "source": "api" if isinstance(tag, TagRecord) else "config",
    }


class Tags:
    """
    The routes of the tag registry (L{xxterocpp.web.api.ROUTES} C{tags.*}).
    """

    def __init__(self, central):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}, whose
            C{tags} is the registry.
        """
        self.central = central

    def all(self, request):
        """
        C{GET /api/tags}: every tag, by id.
        """
        return {"tags": [tag_json(t) for t in sorted(self.central.tags.all(),
                                                     key=lambda t: t.id.casefold())]}

    def one(self, request, tag_id):
        """
        C{GET /api/tags/{id}}.
        """
        tag = self.central.tags.get(tag_id)
        if tag is None:
            raise HttpError(404, f"no tag {tag_id!r}")
        return tag_json(tag)

    @defer.inlineCallbacks
    def put(self, request, tag_id):
        """
        C{PUT /api/tags/{id}}: the tag added or changed (status C{Accepted}
        unless given).
        """
        try:
            parse.id_tag(tag_id)
        except ValueError as e:
            raise HttpError(400, f"the tag id {e}") from None
        values = parse.fields(parse.body(request), {
            "status": parse.tag_status, "expiry": parse.optional(parse.instant),
            "parent": parse.optional(parse.id_tag)})
        tag = TagRecord(tag_id, values.get("status", "Accepted"), values.get("expiry"),
                        values.get("parent"))
        yield self.central.tags.put(tag)
        return tag_json(tag)

    @defer.inlineCallbacks
    def delete(self, request, tag_id):
        """
        C{DELETE /api/tags/{id}}: a tag the API gave removed.
        """
        tag = self.central.tags.get(tag_id)
        if tag is None:
            raise HttpError(404, f"no tag {tag_id!r}")
        if not isinstance(tag, TagRecord):
            raise HttpError(409, f"tag {tag.id!r} is in the configuration file; remove it there")
        yield self.central.tags.remove(tag.id)
        return {"deleted": tag.id}
