/* SLA clocks that count down.
 *
 * The server renders each clock as
 *   <time class="sla-clock" datetime="<due, ISO>" data-state="on_track|at_risk|breached|paused|met"
 *         [data-risk-at="<ISO>"] title="Due …">…</time>
 * with the state computed when the page was drawn. This script rewrites the text every second
 * ("2 h 14 min left", "at risk: 12 min 5 s left", "breached 35 min ago", "paused", "met") and
 * moves the state on as time passes (on track -> at risk at data-risk-at, running -> breached
 * at the due time) until the server's own tick says the same. The state is in the words and in
 * the class `sla-<state>`, never only in a colour. Clocks an hour or more away change once a
 * minute, so they are rewritten every 30 s.
 *
 * Clocks are looked up on every tick, so clocks swapped in by htmx or by live updates count
 * down at once; htmx:afterSwap, crm:case-changed and crm:queue-changed also redraw straight
 * away.
 */
(function () {
  "use strict";

  // The queue's results bring this script along each time they are swapped in: run once.
  if (window.crmSlaClocks) return;
  window.crmSlaClocks = true;

  const SECOND = 1000;
  const MINUTE = 60 * SECOND;
  const HOUR = 60 * MINUTE;
  const DAY = 24 * HOUR;
  const FAR = HOUR; // beyond this, minutes are the finest unit shown
  const FAR_EVERY = 30 * SECOND;
  const STATES = ["on_track", "at_risk", "breached", "paused", "met"];
  const RUNNING = ["on_track", "at_risk"];

  function parse(value) {
    if (!value) return null;
    const time = Date.parse(value);
    return Number.isNaN(time) ? null : time;
  }

  function span(ms) {
    ms = Math.max(0, ms);
    if (ms >= DAY) {
      const days = Math.floor(ms / DAY);
      const hours = Math.floor((ms % DAY) / HOUR);
      return hours ? `${days} d ${hours} h` : `${days} d`;
    }
    if (ms >= FAR) {
      const hours = Math.floor(ms / HOUR);
      const minutes = Math.floor((ms % HOUR) / MINUTE);
      return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
    }
    const minutes = Math.floor(ms / MINUTE);
    const seconds = Math.floor((ms % MINUTE) / SECOND);
    if (!minutes) return `${seconds} s`;
    return `${minutes} min ${String(seconds).padStart(2, "0")} s`;
  }

  /* The state now: the server's, moved on by the clock (never back: only the server may say
   * a target was met or paused). */
  function stateAt(clock, due, now) {
    const state = clock.dataset.state || "";
    if (!RUNNING.includes(state) || due === null) return state;
    if (now >= due) return "breached";
    const riskAt = parse(clock.dataset.riskAt);
    if (state === "on_track" && riskAt !== null && now >= riskAt) return "at_risk";
    return state;
  }

  function text(state, due, now) {
    switch (state) {
      case "on_track":
        return due === null ? "on track" : `${span(due - now)} left`;
      case "at_risk":
        return due === null ? "at risk" : `at risk: ${span(due - now)} left`;
      case "breached":
        return due === null ? "breached" : `breached ${span(now - due)} ago`;
      case "paused":
        return "paused";
      case "met":
        return "met";
      default:
        return "";
    }
  }

  function draw(clock, now, force) {
    const due = parse(clock.getAttribute("datetime"));
    const far = due === null || Math.abs(due - now) >= FAR;
    const last = Number(clock.dataset.drawnAt || 0);
    if (!force && far && clock.dataset.drawnAt && now - last < FAR_EVERY) return;
    const state = stateAt(clock, due, now);
    const words = text(state, due, now);
    if (words && clock.textContent !== words) clock.textContent = words;
    for (const name of STATES) clock.classList.toggle(`sla-${name}`, name === state);
    clock.dataset.liveState = state;
    clock.dataset.drawnAt = String(now);
  }

  function drawAll(force) {
    const now = Date.now();
    document.querySelectorAll("time.sla-clock").forEach((clock) => draw(clock, now, force));
  }

  function redraw() {
    drawAll(true);
  }

  document.addEventListener("htmx:afterSwap", redraw);
  document.addEventListener("crm:case-changed", redraw);
  document.addEventListener("crm:queue-changed", redraw);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", redraw);
  } else {
    redraw();
  }
  window.setInterval(() => drawAll(false), SECOND);
})();
