/* Charts of the dashboard and reports, drawn with the vendored Chart.js.
 *
 * The server renders (cases/charts/chart.html)
 *   <canvas data-chart="<id of a json_script>">  and  <script type="application/json" id=…>
 * holding {kind, labels, series: [{label, values}], links, format}. Nothing here computes a
 * figure: the same numbers are in the table next to each chart. Clicking a bar, slice or point
 * that has a link opens it (the matching queue); the table's links do the same by keyboard.
 * Colours come from CSS custom properties (--chart-1 … --chart-6), so themes and forced-colour
 * modes stay in CSS; animation is off when the user prefers reduced motion.
 */
(function () {
  "use strict";

  const PALETTE_SIZE = 6;

  function palette() {
    const style = getComputedStyle(document.documentElement);
    const colours = [];
    for (let i = 1; i <= PALETTE_SIZE; i += 1) {
      colours.push(style.getPropertyValue(`--chart-${i}`).trim() || "#1f6feb");
    }
    return colours;
  }

  function formatter(format) {
    if (format === "percent") return (v) => `${Number(v).toFixed(1)} %`;
    if (format === "hours") return (v) => `${Number(v).toFixed(1)} h`;
    return (v) => Number(v).toLocaleString();
  }

  function config(spec) {
    const colours = palette();
    const format = formatter(spec.format);
    const kind = spec.kind;
    const type = kind === "stacked" || kind === "horizontal" ? "bar" : kind;
    const datasets = spec.series.map((series, index) => {
      const colour = colours[index % colours.length];
      const dataset = { label: series.label, data: series.values };
      if (type === "doughnut") {
        dataset.backgroundColor = series.values.map((_, i) => colours[i % colours.length]);
      } else {
        dataset.backgroundColor = colour;
        dataset.borderColor = colour;
      }
      if (type === "line") {
        dataset.fill = false;
        dataset.tension = 0.2;
        dataset.spanGaps = true;
      }
      return dataset;
    });
    const reduced = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    const options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: reduced ? false : { duration: 300 },
      plugins: {
        legend: { display: spec.series.length > 1 || type === "doughnut" },
        tooltip: {
          callbacks: {
            label: (ctx) => `${ctx.dataset.label}: ${format(ctx.parsed.y ?? ctx.parsed.x ?? ctx.parsed)}`,
          },
        },
      },
      onClick: (event, elements) => {
        if (!elements.length || !spec.links) return;
        const link = spec.links[elements[0].index];
        if (link) window.location.assign(link);
      },
      onHover: (event, elements) => {
        const hasLink = elements.length && spec.links && spec.links[elements[0].index];
        event.native.target.style.cursor = hasLink ? "pointer" : "default";
      },
    };
    if (type !== "doughnut") {
      const stacked = kind === "stacked";
      // Counts get whole-number ticks (no "0.5 cases" on small figures).
      const precision = spec.format === "count" ? 0 : undefined;
      options.scales = {
        x: { stacked, ticks: { autoSkip: true, maxRotation: 0 } },
        y: { stacked, beginAtZero: true, ticks: { callback: (v) => format(v), precision } },
      };
      if (kind === "horizontal") {
        options.indexAxis = "y";
        options.scales = {
          x: { beginAtZero: true, ticks: { callback: (v) => format(v), precision } },
          y: { ticks: { autoSkip: false } },
        };
      }
    }
    return { type, data: { labels: spec.labels, datasets }, options };
  }

  function draw(root) {
    if (typeof window.Chart === "undefined") return;
    root.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
      if (canvas.dataset.drawn) return;
      const source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      canvas.dataset.drawn = "1";
      new window.Chart(canvas, config(JSON.parse(source.textContent)));
    });
  }

  document.addEventListener("DOMContentLoaded", () => draw(document));
  document.addEventListener("htmx:afterSwap", (event) => draw(event.target));
})();
