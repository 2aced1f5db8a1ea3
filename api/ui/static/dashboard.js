// kcm dashboard: the [data-live] regions (hx-get, hx-trigger="kcm:refresh") refresh every 3 s while the tab is
// visible (no eval: a CSP without 'unsafe-eval'), uPlot charts from the partial's data-series JSON, confirmations.
(function () {
  "use strict";
  var REFRESH_MS = 3000;

  function visible() { return document.visibilityState === "visible"; }

  function refresh() {
    if (!visible()) { return; }
    document.querySelectorAll("[data-live]").forEach(function (region) {
      window.htmx.trigger(region, "kcm:refresh");
    });
  }

  var charts = [];
  function drawCharts(root) {
    var holder = (root || document).querySelector(".chart-data");
    if (!holder || !window.uPlot) { return; }
    var series = JSON.parse(holder.dataset.series);
    charts.forEach(function (chart) { chart.destroy(); });
    charts = [];
    document.querySelectorAll(".chart[data-series]").forEach(function (el) {
      var name = el.dataset.series;
      var width = Math.max(el.parentNode.clientWidth || el.clientWidth || 420, 300);
      var label = name === "lag" ? "lag (messages)" : "committed msg/s";
      var colour = name === "lag" ? "#a61b1b" : "#1f4f8f";
      var opts = { width: width, height: 200, series: [{}, { label: label, stroke: colour, width: 2, spanGaps: true }],
                   axes: [{}, { size: 60 }], legend: { show: true } };
      charts.push(new window.uPlot(opts, [series.times, series[name]], el));
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) { event.preventDefault(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    window.setInterval(refresh, REFRESH_MS);
    document.addEventListener("visibilitychange", function () { if (visible()) { refresh(); } });
    document.body.addEventListener("htmx:afterSwap", function (event) { drawCharts(event.target); });
  });
})();
