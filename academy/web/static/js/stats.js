/*
 * AI 새마을 아카데미 — the admin's statistics charts (Chart.js, vendored from npm).
 *
 * Reads the figures from the data-json attribute of #stats-data (JSON rendered by the server,
 * every label already translated; an attribute, since the CSP allows no inline script) and draws each <canvas id="chart-..."> in it.
 * Every chart also has a table view in the page, so nothing depends on this script.
 */
(function () {
  "use strict";

  var PRIMARY = "#0b4f9c";
  var GREEN = "#1e7b4f";
  var ORANGE = "#b45309";
  var GREY = "#8a94a6";

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas || typeof Chart === "undefined") {
      return;
    }
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
    new Chart(canvas, config);
  }

  function bar(labels, datasets, horizontal, stacked) {
    return {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        indexAxis: horizontal ? "y" : "x",
        plugins: { legend: { display: datasets.length > 1 } },
        scales: { x: { stacked: !!stacked, beginAtZero: true }, y: { stacked: !!stacked, beginAtZero: true } }
      }
    };
  }

  function hours(data) {
    return bar(data.labels, [
      { label: data.names[0], data: data.gpu, backgroundColor: PRIMARY },
      { label: data.names[1], data: data.shared, backgroundColor: ORANGE },
      { label: data.names[2], data: data.lab, backgroundColor: GREY }
    ], true, false);
  }

  function start() {
    var node = document.getElementById("stats-data");
    if (!node) {
      return;
    }
    var data = JSON.parse(node.getAttribute("data-json"));
    Chart.defaults.font.family = "Pretendard, system-ui, sans-serif";
    draw("chart-funnel", bar(data.funnel.labels, [
      { label: data.funnel.name, data: data.funnel.values, backgroundColor: PRIMARY }
    ], true));
    draw("chart-weekly", {
      type: "line",
      data: { labels: data.weekly.labels, datasets: [
        { label: data.weekly.name, data: data.weekly.values, borderColor: PRIMARY, backgroundColor: PRIMARY, tension: 0.2 }
      ] },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } }
    });
    draw("chart-by", bar(data.by.labels, [
      { label: data.by.names[0], data: data.by.enrolled, backgroundColor: PRIMARY },
      { label: data.by.names[1], data: data.by.completed, backgroundColor: GREEN }
    ], false));
    draw("chart-hours-course", hours(data.hours_course));
    draw("chart-hours-company", hours(data.hours_company));
    data.scores.forEach(function (buckets, index) {
      draw("chart-score-" + index, bar(data.score_labels, [
        { label: data.score_name, data: buckets, backgroundColor: PRIMARY }
      ], false));
    });
    document.documentElement.setAttribute("data-charts-drawn", "yes");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
