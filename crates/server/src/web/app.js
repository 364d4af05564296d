// The web manager's only script: on a job's page, it asks the server for the job's figures
// every two seconds, writes them into the page and draws them over time as lines in an SVG.
// Succeeded and failed tasks come from the history the server keeps (results by the time they
// arrived, so a reloaded page shows the whole run); running and queued from this page's polls.
// Nothing is fetched from anywhere but this server.
"use strict";

(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const url = live.dataset.stats;
  const chart = document.getElementById("chart");
  const fromHistory = { succeeded: "#2f855a", failed: "#c53030" };
  const fromPolls = { running: "#2b6cb0", queued: "#b7791f" };
  const samples = [];
  let history = [];
  const SAMPLES_MAX = 300;
  const NS = "http://www.w3.org/2000/svg";

  function money(micros) {
    const sign = micros < 0 ? "-" : "";
    const abs = Math.abs(micros);
    return sign + Math.floor(abs / 1e6) + "." + String(abs % 1e6).padStart(6, "0");
  }

  function show(field, text) {
    const cell = document.getElementById("f-" + field);
    if (cell && cell.textContent !== text) cell.textContent = text;
  }

  function line(points, name, color, scale) {
    const element = document.createElementNS(NS, "polyline");
    element.setAttribute("points", points.map(([t, v]) => scale(t, v)).join(" "));
    element.setAttribute("fill", "none");
    element.setAttribute("stroke", color);
    element.setAttribute("stroke-width", "2");
    element.setAttribute("data-series", name);
    chart.appendChild(element);
  }

  function draw() {
    if (!chart || samples.length === 0) return;
    while (chart.firstChild) chart.removeChild(chart.firstChild);
    const width = 600, height = 200, pad = 4;
    const top = Math.max(1, ...samples.map((s) => s.total));
    const t0 = Math.min(samples[0].now_ms, ...history.map((h) => h.at_ms));
    const span = Math.max(1, samples[samples.length - 1].now_ms - t0);
    const scale = (t, v) => {
      const x = pad + ((t - t0) / span) * (width - 2 * pad);
      const y = height - pad - (v / top) * (height - 2 * pad);
      return x.toFixed(1) + "," + y.toFixed(1);
    };
    for (const [name, color] of Object.entries(fromHistory)) {
      const points = history.map((h) => [h.at_ms, h[name]]);
      const last = samples[samples.length - 1];
      points.push([last.now_ms, last[name]]);
      line(points, name, color, scale);
    }
    for (const [name, color] of Object.entries(fromPolls)) {
      line(samples.map((s) => [s.now_ms, s[name]]), name, color, scale);
    }
    chart.setAttribute("data-samples", String(samples.length));
    chart.setAttribute("data-history", String(history.length));
  }

  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const s = await response.json();
        for (const field of ["state", "total", "created", "queued", "running", "stopped", "succeeded", "failed"]) {
          show(field, String(s[field]));
        }
        show("spent", money(s.spent_micros));
        show("power_delivered", s.power_delivered_gflops.toFixed(1));
        history = s.history || [];
        delete s.history;
        samples.push(s);
        if (samples.length > SAMPLES_MAX) samples.shift();
        draw();
      }
    } catch (e) {
      // The next poll tries again.
    }
    setTimeout(poll, 2000);
  }
  poll();
})();
