// The dashboard's charts: Chart.js (vendored, window.Chart) draws what the server computed into
// the page's JSON block (#dashboard-data). Each <canvas data-chart="key"> gets one chart.
(function () {
  "use strict";

  var COLORS = ["#1f6feb", "#d1242f", "#8250df", "#1a7f37", "#bf8700", "#57606a", "#cf222e", "#0969da"];

  function line(label, data, color, axis) {
    return { type: "line", label: label, data: data, borderColor: color, backgroundColor: color,
      yAxisID: axis || "y", spanGaps: true, tension: 0.2, pointRadius: 2 };
  }

  function bar(label, data, color, axis) {
    return { type: "bar", label: label, data: data, backgroundColor: color + "99", borderColor: color,
      yAxisID: axis || "y" };
  }

  function scales(left, right) {
    var out = { x: { ticks: { maxRotation: 0, autoSkip: true } },
      y: { beginAtZero: true, title: { display: true, text: left } } };
    if (right) {
      out.y1 = { beginAtZero: true, position: "right", grid: { drawOnChartArea: false },
        title: { display: true, text: right } };
    }
    return out;
  }

  function percentAxis(out, axis) {
    out[axis].max = 100;
    return out;
  }

  function configs(d) {
    var s = d.series, labels = d.labels, c = COLORS;
    return {
      latency: { labels: labels, datasets: [
        line("first token p50", s.ttft_p50, c[0]), line("first token p95", s.ttft_p95, c[2]),
        line("total p50", s.total_p50, c[3]), line("total p95", s.total_p95, c[1])],
        scales: scales("ms") },
      throughput: { labels: labels, datasets: [
        bar("turns", s.turns, c[0]), line("error rate %", s.error_rate, c[1], "y1")],
        scales: percentAxis(scales("turns", "%"), "y1") },
      cost: { labels: labels, datasets: [
        bar("cost $", s.cost, c[4]), line("tokens", s.tokens, c[2], "y1")],
        scales: scales("$", "tokens") },
      by_model: { labels: d.by_model.labels, datasets: [
        bar("cost $", d.by_model.cost, c[4]), bar("tokens", d.by_model.tokens, c[2], "y1")],
        scales: scales("$", "tokens") },
      by_group: { labels: d.by_group.labels, datasets: [
        bar("cost $", d.by_group.cost, c[4]), bar("tokens", d.by_group.tokens, c[2], "y1")],
        scales: scales("$", "tokens") },
      quality: { labels: labels, datasets: [
        line("judge pass rate %", s.judge_pass_rate, c[3]), line("thumbs up %", s.thumbs_up_rate, c[0]),
        line("review grade (1-5)", s.review_grade, c[2], "y1")],
        scales: percentAxis(scales("%", "grade"), "y") },
      safety: { labels: labels, datasets: [
        bar("toxicity flags", s.toxicity_flagged, c[1]), bar("personal-data flags", s.pii_flagged, c[4])],
        scales: scales("turns flagged") },
      value: { labels: labels, datasets: [
        line("escalation rate %", s.escalation_rate, c[1]),
        line("no-answer rate %", s.no_answer_rate, c[4]), line("task success %", s.task_success, c[3])],
        scales: percentAxis(scales("%"), "y") },
      people: { labels: labels, datasets: [bar("people", s.active_users, c[0])],
        scales: scales("people") }
    };
  }

  function draw() {
    var block = document.getElementById("dashboard-data");
    if (!block || typeof window.Chart === "undefined") return;
    var all = configs(JSON.parse(block.textContent));
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var spec = all[canvas.dataset.chart];
      if (!spec) return;
      var chart = new window.Chart(canvas, {
        type: "bar",
        data: { labels: spec.labels, datasets: spec.datasets },
        options: { responsive: true, maintainAspectRatio: false, animation: false,
          interaction: { mode: "index", intersect: false }, scales: spec.scales,
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } } }
      });
      canvas.dataset.rendered = chart ? "true" : "false";
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
