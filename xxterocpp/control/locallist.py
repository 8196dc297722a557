# -*- test-case-name: tests.test_control -*-
"""
The chargers' local authorization lists kept in step with the tag registry
(for chargers with LocalAuthListManagement): a full list first, then
differential updates, a full list again when the charger lost track.
"""

from twisted.internet import defer

from xxterocpp.control.coalesce import coalesced
from xxterocpp.control.configuration import csl
from xxterocpp.control.sender import SILENT, CommandResult
from xxterocpp.ocpp import messages as m
from xxterocpp.ocpp.handlers import id_tag_info


class LocalList:
    """
    The local authorization list of every charger: what was sent last
    (version and entries, persisted as the setting C{local_list}).
    """

    def __init__(self, central, sender, save):
        """
        @param central: the L{xxterocpp.domain.central.CentralSystem}.
        @param sender: the L{xxterocpp.control.sender.Sender}.
        @param save: C{save(scope, key, value)} persists a setting.
        """
        self.central = central
        self.sender = sender
        self._save = save
        self._syncs = {}
        self._sent = {}

    def restore(self, charger_id, key, value):
        """
        Take over a persisted setting of a charger, if it is one of ours.
        """
        if key == "local_list":
            self._sent[charger_id] = value

    def tags_changed(self, event):
        """
        The tag registry changed: every connected, set-up charger follows.
        """
        for charger_id, charger in self.central.chargers.items():
            if charger.connected and charger.configuration:
                self.sync(charger_id)

    def sync(self, charger_id):
        """
        Bring a charger's list in step with the registry; coalesced.

        @return: a Deferred firing with a L{CommandResult}.
        """
        return coalesced(self._syncs, charger_id, lambda: self._sync(charger_id))

    def _entries(self, charger_id):
        """
        @return: C{{idTag: IdTagInfo JSON}}: the registry as this charger's
            C{allowed_tags} see it.
        """
        return {tag.id: m.encode(id_tag_info(self.central.authorize(charger_id, None, tag.id)))
                for tag in self.central.tags.all()}

    @defer.inlineCallbacks
    def _sync(self, charger_id):
        charger = self.central.chargers.get(charger_id)
        if charger is None:
            return CommandResult(False, "Refused", "no longer configured")
        profiles = csl(charger.configuration.get("SupportedFeatureProfiles"))
        if "LocalAuthListManagement" not in profiles:
            return CommandResult(True, "Accepted", "no local authorization list")
        result = yield self.sender.call(charger, m.GetLocalListVersionRequest(), bounded=False)
        if not result.accepted:
            return result
        version = result.response.list_version
        if version is None or version < 0:
            return CommandResult(True, "Accepted", "no local authorization list")
        entries = self._entries(charger_id)
        known = self._sent.get(charger_id)
        if known is not None and known["version"] == version:
            old = known["entries"]
            changes = [m.AuthorizationData(id_tag=tag, id_tag_info=None) for tag in old
                       if tag not in entries]
            changes += [_authorization(tag, info) for tag, info in entries.items()
                        if old.get(tag) != info]
            if not changes:
                return CommandResult(True, "Accepted", "local authorization list up to date")
            result = yield self._send(charger, version + 1, "Differential", changes, entries)
            if result.accepted or result.status in SILENT or result.status == "NotSupported":
                return result
            # VersionMismatch or Failed: start again from a full list.
        full = [_authorization(tag, info) for tag, info in entries.items()]
        top = max(version, known["version"] if known else 0)
        return (yield self._send(charger, top + 1, "Full", full, entries))

    @defer.inlineCallbacks
    def _send(self, charger, version, update_type, data, entries):
        result = yield self.sender.call(charger, m.SendLocalListRequest(
            list_version=version, update_type=update_type, local_authorization_list=tuple(data)),
            bounded=False)
        if result.accepted:
            self._sent[charger.id] = {"version": version, "entries": entries}
            self._save(charger.id, "local_list", self._sent[charger.id])
        return result


def _authorization(tag, info):
    return m.AuthorizationData(id_tag=tag, id_tag_info=m.decode(m.IdTagInfo, info)[0])
