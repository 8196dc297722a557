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
//                   BootNotification once open: time until all are booted.
// Prints one JSON object on stdout.

"use strict";
const WebSocket = require("ws");

const [mode, baseUrl, nArg, secondsArg] = process.argv.slice(2);
const N = parseInt(nArg, 10);
const SECONDS = parseFloat(secondsArg || "10");
const ids = Array.from({ length: N }, (_, i) => "CP" + String(i).padStart(4, "0"));
const cpuStart = process.cpuUsage();
const wallStart = process.hrtime.bigint();
const latencies = [];
let errors = 0;
let callErrors = 0;

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
      ws.on("message", (data) => this.received(data));
    });
  }
  received(data) {
    const frame = JSON.parse(data.toString());
    if (frame[0] === 2) {
      // A CALL of the central system: accept whatever it is.
      this.ws.send(JSON.stringify([3, frame[1], {}]));
      return;
    }
    const p = this.pending.get(frame[1]);
    if (!p) return;
    this.pending.delete(frame[1]);
    if (frame[0] === 4) callErrors++;
    p.resolve(frame);
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
  }, extra);
  process.stdout.write(JSON.stringify(out) + "\n");
}

async function connectAll(chargers, batch) {
  for (let i = 0; i < chargers.length; i += batch) {
    await Promise.all(chargers.slice(i, i + batch).map((c) => c.connect()));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function throughput() {
  const chargers = ids.map((id) => new Charger(id));
  await connectAll(chargers, 50);
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
  await Promise.all(chargers.map((c) => c.call("BootNotification",
    { chargePointVendor: "Bench", chargePointModel: "LG-1" })));
  latencies.length = 0;
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
    await c.call("BootNotification", { chargePointVendor: "Bench", chargePointModel: "LG-1" });
    booted++;
    last = now() - t0;
  }));
  const failed = results.filter((r) => r.status === "rejected").length;
  report({ booted, failed, all_booted_s: last / 1000 });
  chargers.forEach((c) => c.close());
}

const modes = { throughput, scale, storm };
modes[mode]().then(() => setTimeout(() => process.exit(0), 200), (e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  report({ fatal: String(e) });
  process.exit(1);
});
