// The web manager's only script: on a job's page, it asks the server for the job's figures
// every two seconds, writes them into the page and draws them over time as lines in an SVG.
// Nothing is fetched from anywhere but this server.
"use strict";

(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const url = live.dataset.stats;
  const chart = document.getElementById("chart");
  const series = { succeeded: "#2f855a", running: "#2b6cb0", queued: "#b7791f", failed: "#c53030" };
  const samples = [];
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

  function draw() {
    if (!chart || samples.length === 0) return;
    while (chart.firstChild) chart.removeChild(chart.firstChild);
    const width = 600, height = 200, pad = 4;
    const top = Math.max(1, ...samples.map((s) => s.total));
    const t0 = samples[0].now_ms;
    const span = Math.max(1, samples[samples.length - 1].now_ms - t0);
    for (const [name, color] of Object.entries(series)) {
      const points = samples.map((s) => {
        const x = pad + ((s.now_ms - t0) / span) * (width - 2 * pad);
        const y = height - pad - (s[name] / top) * (height - 2 * pad);
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      const line = document.createElementNS(NS, "polyline");
      line.setAttribute("points", points.join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", color);
      line.setAttribute("stroke-width", "2");
      line.setAttribute("data-series", name);
      chart.appendChild(line);
    }
    chart.setAttribute("data-samples", String(samples.length));
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
