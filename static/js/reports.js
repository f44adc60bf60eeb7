/* The reports page: typing a date into "From" or "To" chooses the "Custom" period, so the
 * dates typed are the dates shown. Without this script the hint under the form says the same. */
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.querySelector("form.report-controls");
    if (!form) return;
    const period = form.elements.namedItem("period");
    ["start", "until"].forEach((name) => {
      const input = form.elements.namedItem(name);
      if (!input || !period) return;
      input.addEventListener("change", () => {
        period.value = "custom";
      });
    });
  });
})();
