// A test back office: an ocpp-rpc (npm) server in strict mode, which checks
// every CALL we send it and every answer we give its CALLs against the
// OCPP 1.6 JSON schemas. Used by tests/test_upstream_ocpprpc.py.
//
// stdout: one JSON object per line: {"event": "listening", "port"},
// {"event": "call", "identity", "method", "params"} for each CALL received,
// {"event": "invalid", ...} for each strict validation failure,
// {"event": "result", "id", "result"} / {"event": "error", "id", "error"}
// for the CALLs it was asked to send.
// stdin: one JSON object per line: {"id", "identity", "method", "params"}:
// a CALL to send to that connected charger. It stops when stdin closes.
// Argument: the port to listen on (default: a free one).

const readline = require('readline');
const { RPCServer } = require('ocpp-rpc');

const server = new RPCServer({ protocols: ['ocpp1.6'], strictMode: true });
const clients = new Map();
let nextTransactionId = 900001;
const say = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const now = () => new Date().toISOString();

const answers = {
  BootNotification: () => ({ status: 'Accepted', interval: 300, currentTime: now() }),
  Heartbeat: () => ({ currentTime: now() }),
  StatusNotification: () => ({}),
  Authorize: ({ idTag }) => ({ idTagInfo: { status: idTag === 'VISITOR' ? 'Accepted' : 'Invalid' } }),
  StartTransaction: () => ({ transactionId: nextTransactionId++, idTagInfo: { status: 'Accepted' } }),
  StopTransaction: () => ({}),
  MeterValues: () => ({}),
  DiagnosticsStatusNotification: () => ({}),
  FirmwareStatusNotification: () => ({}),
};

server.on('client', (client) => {
  clients.set(client.identity, client);
  client.on('close', () => clients.delete(client.identity));
  client.on('strictValidationFailure', (failure) => say({
    event: 'invalid', identity: client.identity, method: failure.method,
    outbound: failure.outbound, isCall: failure.isCall, error: String(failure.error),
  }));
  client.handle(({ method, params }) => {
    say({ event: 'call', identity: client.identity, method, params });
    return answers[method](params);
  });
});

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const { id, identity, method, params } = JSON.parse(line);
  try {
    const result = await clients.get(identity).call(method, params);
    say({ event: 'result', id, result });
  } catch (error) {
    say({ event: 'error', id, error: String(error) });
  }
});

process.stdin.on('end', () => server.close().then(() => process.exit(0)));

// The port to listen on: the first argument, a free one without.
const port = Number(process.argv[2] || 0);
server.listen(port, '127.0.0.1').then((http) => say({ event: 'listening', port: http.address().port }));
