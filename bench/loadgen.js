#!/usr/bin/env node
// The load generator of the xxterocpp benchmarks: simulated OCPP 1.6J chargers
// over WebSocket (the `ws` package), one Node process, all to 127.0.0.1.
// It measures its own CPU so the report can show it was not the bottleneck.
//
//   node bench/loadgen.js MODE URL N [SECONDS]
//
// MODE: throughput  N chargers, each with one MeterValues CALL outstanding at a
//                   time (energy + per-phase current), for SECONDS;
//       scale       N chargers connected, each sending a Heartbeat every 10 s
//                   (staggered) for SECONDS; the server pings them;
//       storm       N chargers connecting at the same moment, each sending its
//                   BootNotification once open: time until all are booted;
//       soak        N chargers for SECONDS: heartbeats every 10 s, charging
//                   sessions (Start, MeterValues every 2 s, Stop) and now and
//                   then a reconnect (bench/soak.py samples the server's RSS).
//                   An optional SPEED after SECONDS makes all of it that many
//                   times more frequent.
// Every charger answers the central system's CALLs as a real one would.
// Prints one JSON object on stdout.

"use strict";
const WebSocket = require("ws");

const [mode, baseUrl, nArg, secondsArg] = process.argv.slice(2);
const N = parseInt(nArg, 10);
const SECONDS = parseFloat(secondsArg || "10");
// soak only: how many times faster than real chargers its chargers live
// (sessions, MeterValues, heartbeats, reconnects all that much more often),
// so that a short soak goes through what an hour of real load does.
const SPEED = parseFloat(process.argv[6] || "1");
const ids = Array.from({ length: N }, (_, i) => "CP" + String(i).padStart(4, "0"));
const cpuStart = process.cpuUsage();
const wallStart = process.hrtime.bigint();
const latencies = [];
let errors = 0;
let callErrors = 0;
const csCalls = {}; // CS->CP CALLs answered, by action
let lastCsCall = 0;

function now() {
  return Number(process.hrtime.bigint()) / 1e6; // ms
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function meterValues(seq) {
  const energy = 1000 + seq;
  return {
    connectorId: 1,
    meterValue: [{
      timestamp: new Date().toISOString(),
      sampledValue: [
        { value: String(energy), measurand: "Energy.Active.Import.Register", unit: "Wh" },
        { value: "16.0", measurand: "Current.Import", phase: "L1", unit: "A" },
        { value: "16.1", measurand: "Current.Import", phase: "L2", unit: "A" },
        { value: "15.9", measurand: "Current.Import", phase: "L3", unit: "A" },
      ],
    }],
  };
}

class Charger {
  constructor(id) {
    this.id = id;
    this.seq = 0;
    this.pending = new Map();
    this.config = {};
    this.listVersion = 0;
  }
  connect() {
    return new Promise((resolve, reject) => {
      const ws = (this.ws = new WebSocket(baseUrl + this.id, ["ocpp1.6"], {
        perMessageDeflate: false,
        handshakeTimeout: 30000,
      }));
      ws.on("open", () => resolve(this));
      ws.on("error", (e) => { errors++; reject(e); });
      ws.on("close", () => {
        for (const [, p] of this.pending) p.reject(new Error("closed"));
        this.pending.clear();
      });
      ws.on("message", (data) => this.received(ws, data));
    });
  }
  received(ws, data) {
    const frame = JSON.parse(data.toString());
    if (frame[0] === 2) {
      // A CALL of the central system: answered as a real charger would, on
      // the connection it came on (a reconnect may have replaced it).
      const action = frame[2];
      csCalls[action] = (csCalls[action] || 0) + 1;
      lastCsCall = now();
      const answer = JSON.stringify([3, frame[1], this.answer(action, frame[3] || {})]);
      if (ws.readyState === WebSocket.OPEN) ws.send(answer);
      return;
    }
    const p = this.pending.get(frame[1]);
    if (!p) return;
    this.pending.delete(frame[1]);
    if (frame[0] === 4) callErrors++;
    p.resolve(frame);
  }
  // The CALLRESULT payload of a CS->CP CALL. The configuration is kept, so
  // a charger that reconnects reports what the controller set before.
  answer(action, payload) {
    switch (action) {
      case "GetConfiguration": {
        const keys = payload.key && payload.key.length ? payload.key : Object.keys(this.config);
        const known = keys.filter((k) => k in this.config);
        const out = { configurationKey: known.map((k) => ({ key: k, readonly: false, value: this.config[k] })) };
        const unknown = keys.filter((k) => !(k in this.config));
        if (payload.key && unknown.length) out.unknownKey = unknown;
        return out;
      }
      case "ChangeConfiguration":
        this.config[payload.key] = payload.value;
        return { status: "Accepted" };
      case "UnlockConnector":
        return { status: "Unlocked" };
      case "GetLocalListVersion":
        return { listVersion: this.listVersion };
      case "SendLocalList":
        this.listVersion = payload.listVersion;
        return { status: "Accepted" };
      case "GetDiagnostics":
      case "UpdateFirmware":
        return {};
      default: // SetChargingProfile, TriggerMessage, Remote*, Reset, ...
        return { status: "Accepted" };
    }
  }
  call(action, payload) {
    const id = String(++this.seq);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, sent: now() });
      const started = now();
      this.pending.get(id).resolve = (frame) => { latencies.push(now() - started); resolve(frame); };
      this.ws.send(JSON.stringify([2, id, action, payload]));
    });
  }
  close() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
  }
}

function report(extra) {
  const cpu = process.cpuUsage(cpuStart);
  const wall = Number(process.hrtime.bigint() - wallStart) / 1e9;
  latencies.sort((a, b) => a - b);
  const out = Object.assign({
    mode, n: N, calls: latencies.length, errors, call_errors: callErrors,
    p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99),
    max_ms: latencies.length ? latencies[latencies.length - 1] : null,
    loadgen_cpu_s: (cpu.user + cpu.system) / 1e6, loadgen_wall_s: wall,
    cs_calls: csCalls,
  }, extra);
  process.stdout.write(JSON.stringify(out) + "\n");
}

async function connectAll(chargers, batch) {
  for (let i = 0; i < chargers.length; i += batch) {
    await Promise.all(chargers.slice(i, i + batch).map((c) => c.connect()));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const BOOT = { chargePointVendor: "Bench", chargePointModel: "LG-1" };

// Boot every charger, then wait until the controller's post-boot set-up
// (GetConfiguration, ChangeConfiguration, SetChargingProfile, ...) is over:
// no CS->CP CALL for `quietMs` (at most `limitMs`).
async function bootAll(chargers, quietMs = 500, limitMs = 20000) {
  await Promise.all(chargers.map((c) => c.call("BootNotification", BOOT)));
  const start = now();
  while (now() - start < limitMs) {
    await sleep(100);
    if (now() - Math.max(lastCsCall, start) >= quietMs) break;
  }
  latencies.length = 0;
}

async function throughput() {
  const chargers = ids.map((id) => new Charger(id));
  await connectAll(chargers, 50);
  await bootAll(chargers);
  // Warm-up (the first calls pay for imports and caches), then measure.
  await Promise.all(chargers.map((c) => c.call("MeterValues", meterValues(0))));
  latencies.length = 0;
  const cpu0 = process.cpuUsage();
  const t0 = now();
  const end = t0 + SECONDS * 1000;
  await Promise.all(chargers.map(async (c) => {
    while (now() < end) await c.call("MeterValues", meterValues(c.seq));
  }));
  const elapsed = (now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const calls = latencies.length;
  report({ seconds: elapsed, calls_per_s: calls / elapsed,
           loadgen_cpu_pct: (100 * (cpu.user + cpu.system)) / 1e6 / elapsed });
  chargers.forEach((c) => c.close());
}

async function scale() {
  const chargers = ids.map((id) => new Charger(id));
  await connectAll(chargers, 100);
  await bootAll(chargers);
  process.stderr.write("connected\n"); // the runner samples the server now
  const cpu0 = process.cpuUsage();
  const t0 = now();
  const end = t0 + SECONDS * 1000;
  await Promise.all(chargers.map(async (c, i) => {
    await sleep((i * 10000) / N); // stagger the heartbeats over the 10 s
    while (now() < end) {
      const t = now();
      await c.call("Heartbeat", {});
      const rest = 10000 - (now() - t);
      if (now() + rest >= end) break;
      await sleep(rest);
    }
  }));
  const elapsed = (now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  report({ seconds: elapsed, loadgen_cpu_pct: (100 * (cpu.user + cpu.system)) / 1e6 / elapsed });
  process.stderr.write("done\n");
  await sleep(500); // let the runner read the figures with everyone connected
  chargers.forEach((c) => c.close());
}

async function storm() {
  const chargers = ids.map((id) => new Charger(id));
  const t0 = now();
  let booted = 0;
  let last = 0;
  const results = await Promise.allSettled(chargers.map(async (c) => {
    await c.connect();
    await c.call("BootNotification", BOOT);
    booted++;
    last = now() - t0;
  }));
  const failed = results.filter((r) => r.status === "rejected").length;
  const allBooted = last / 1000;
  // Then the controller's set-up of every charger: until it is done.
  const start = now();
  while (now() - start < 20000) {
    await sleep(100);
    if (now() - Math.max(lastCsCall, start) >= 500) break;
  }
  report({ booted, failed, all_booted_s: allBooted,
           set_up_done_s: (Math.max(lastCsCall, t0 + last) - t0) / 1000 });
  chargers.forEach((c) => c.close());
}

async function soak() {
  const chargers = ids.map((id) => new Charger(id));
  await connectAll(chargers, 50);
  await bootAll(chargers);
  process.stderr.write("connected\n");
  const t0 = now();
  const end = t0 + SECONDS * 1000;
  const counts = { sessions: 0, reconnects: 0, failures: 0 };
  const status = (c, s) => c.call("StatusNotification", { connectorId: 1, errorCode: "NoError", status: s });
  const k = SPEED;
  async function life(c, i) {
    await sleep((i * 10000) / N / k); // stagger
    let nextBeat = now();
    let nextReconnect = now() + (60000 + Math.random() * 120000) / k;
    while (now() < end) {
      try {
        if (now() >= nextReconnect) {
          c.close();
          await sleep(200);
          await c.connect();
          await c.call("BootNotification", BOOT);
          counts.reconnects++;
          nextReconnect = now() + (60000 + Math.random() * 120000) / k;
        }
        // A charging session of 20-40 s, MeterValues every 2 s.
        await status(c, "Preparing");
        const meterStart = c.energy || 0;
        const started = await c.call("StartTransaction", { connectorId: 1, idTag: "BENCH",
          meterStart: Math.round(meterStart), timestamp: new Date().toISOString() });
        const tx = started[2] && started[2].transactionId;
        await status(c, "Charging");
        const stopAt = now() + (20000 + Math.random() * 20000) / k;
        while (now() < stopAt && now() < end) {
          c.energy = (c.energy || 0) + 6; // ~11 kW for 2 s
          const mv = meterValues(Math.round(c.energy));
          mv.transactionId = tx;
          await c.call("MeterValues", mv);
          if (now() >= nextBeat) { await c.call("Heartbeat", {}); nextBeat = now() + 10000 / k; }
          await sleep(2000 / k);
        }
        await c.call("StopTransaction", { transactionId: tx, meterStop: Math.round(c.energy || 0),
          timestamp: new Date().toISOString(), reason: "Local" });
        await status(c, "Available");
        counts.sessions++;
        const idleUntil = now() + (5000 + Math.random() * 10000) / k;
        while (now() < idleUntil && now() < end) {
          if (now() >= nextBeat) { await c.call("Heartbeat", {}); nextBeat = now() + 10000 / k; }
          await sleep(1000 / k);
        }
      } catch (e) {
        counts.failures++;
        await sleep(1000);
        if (!c.ws || c.ws.readyState !== WebSocket.OPEN) {
          try { await c.connect(); await c.call("BootNotification", BOOT); } catch (e2) { /* next round */ }
        }
      }
    }
  }
  await Promise.all(chargers.map(life));
  report(Object.assign({ seconds: (now() - t0) / 1000 }, counts));
  process.stderr.write("done\n");
  chargers.forEach((c) => c.close());
}

const modes = { throughput, scale, storm, soak };
modes[mode]().then(() => setTimeout(() => process.exit(0), 200), (e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  report({ fatal: String(e) });
  process.exit(1);
});
