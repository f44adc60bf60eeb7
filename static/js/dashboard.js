/* The dashboard's panels follow the queues (cases/templates/cases/dashboard/page.html).
 *
 * live.js dispatches "crm:queue-changed" when a case of the agent's queues changed (on pages
 * that carry [data-live-queue-events]). The panels are then fetched again through htmx (the
 * same URL, only #dashboard-panels taken from the answer), at most once every 10 s however busy
 * the queues are, and not while the tab is hidden (once when it is shown again). charts.js and
 * sla.js draw what was swapped in (htmx:afterSwap). The server's figures come from the cache
 * (cases.analytics_cache), so a refresh costs the few live queries of the page.
 */
(function () {
  "use strict";

  const MIN_INTERVAL_MS = 10000;
  let last = 0;
  let timer = null;
  let pending = false;

  function refresh() {
    timer = null;
    if (document.hidden) {
      pending = true;
      return;
    }
    pending = false;
    last = Date.now();
    const panels = document.getElementById("dashboard-panels");
    if (!panels || !window.htmx) return;
    window.htmx.ajax("GET", window.location.pathname + window.location.search, {
      target: "#dashboard-panels",
      select: "#dashboard-panels",
      swap: "outerHTML",
    });
  }

  function request() {
    if (timer) return;
    timer = setTimeout(refresh, Math.max(0, last + MIN_INTERVAL_MS - Date.now()));
  }

  document.addEventListener("crm:queue-changed", request);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && pending) request();
  });
})();
