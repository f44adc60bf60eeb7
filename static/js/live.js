/* Live updates for every page of a signed-in agent, over one WebSocket (`/ws/live`).
 *
 * The socket says what changed; this script fetches what to show:
 *  - the case page (`#presence[data-case]`): on "case.changed" the header, conversation, notes,
 *    tasks and timeline are fetched from `/cases/<number>/live` and put in place. The composer
 *    is never touched, and a part the agent is editing (focus inside, or a field changed but
 *    not saved) waits until they leave it. New messages are added to the conversation, the
 *    ones shown stay (their frames do not reload). Then "crm:case-changed" is dispatched.
 *    Presence: "viewing" on arrival, "replying" while the composer says so ("crm:composing"),
 *    repeated every 15 s as a heartbeat; others are shown in #presence (never yourself).
 *  - the queue page (`#results`): on "queue.changed" the results and the views' counts are
 *    fetched again through the queue's own htmx endpoints, at most once a second and not while
 *    rows are selected; then "crm:queue-changed" is dispatched.
 *  - a page marked [data-live-queue-events] (the dashboard): "queue.changed" dispatches
 *    "crm:queue-changed" for the page's own script to refresh.
 *  - every page: "notification" updates the bell's count and name, and shows a toast.
 *
 * The socket reconnects with backoff (1 s doubling to 30 s, with jitter); after a reconnect
 * the page's parts are fetched again, since events may have been missed. Close code 4401
 * means "not signed in": no retry. The root element carries the socket's state
 * (data-live="open|closed", data-live-case, data-live-queue) for styles and tests.
 */
(function () {
  "use strict";

  const HEARTBEAT_MS = 15000;
  const QUEUE_MIN_INTERVAL_MS = 1000;
  const TOAST_MS = 8000;
  const MAX_BACKOFF_MS = 30000;

  let socket = null;
  let backoff = 1000;
  let hadConnection = false;
  let heartbeat = null;
  let presenceState = "viewing";

  function caseNumber() {
    const presence = document.getElementById("presence");
    return presence && presence.dataset.case ? presence.dataset.case : "";
  }

  function onQueuePage() {
    return !!document.querySelector("section.queue #results");
  }

  // Other pages that follow the queues (the dashboard) mark themselves and refresh on
  // "crm:queue-changed" themselves.
  function followsQueue() {
    return onQueuePage() || !!document.querySelector("[data-live-queue-events]");
  }

  function queueChanged() {
    if (onQueuePage()) queueRefresh.request();
    else if (followsQueue()) {
      document.dispatchEvent(new CustomEvent("crm:queue-changed", { detail: {} }));
    }
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  // --- the connection -----------------------------------------------------------------------

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${window.location.host}/ws/live`);
    socket.addEventListener("open", () => {
      backoff = 1000;
      document.documentElement.dataset.live = "open";
      if (caseNumber()) send({ subscribe: { case: caseNumber() } });
      if (followsQueue()) send({ subscribe: "queue" });
      if (hadConnection) {
        // Events may have been missed while the socket was down.
        if (caseNumber()) caseRefresh.request();
        queueChanged();
      }
      hadConnection = true;
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      const handler = HANDLERS[message.type];
      if (handler) handler(message);
    });
    socket.addEventListener("close", (event) => {
      socket = null;
      document.documentElement.dataset.live = "closed";
      delete document.documentElement.dataset.liveCase;
      delete document.documentElement.dataset.liveQueue;
      clearInterval(heartbeat);
      heartbeat = null;
      if (event.code === 4401) return;
      const delay = backoff + Math.random() * backoff * 0.3;
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      setTimeout(connect, delay);
    });
  }

  const HANDLERS = {
    subscribed(message) {
      if (message.queue) document.documentElement.dataset.liveQueue = "subscribed";
      if (message.case && message.case === caseNumber()) {
        document.documentElement.dataset.liveCase = message.case;
        send({ presence: { case: message.case, state: presenceState } });
        clearInterval(heartbeat);
        heartbeat = setInterval(() => {
          send({ presence: { case: caseNumber(), state: presenceState } });
        }, HEARTBEAT_MS);
      }
    },
    "case.changed"(message) {
      if (message.case === caseNumber()) caseRefresh.request();
    },
    "queue.changed"() {
      queueChanged();
    },
    notification(message) {
      updateBell(message.unread);
      if (message.title) toast(message.title, message.url);
    },
    presence(message) {
      if (message.case === caseNumber()) showPresence(message.agents || []);
    },
  };

  // --- refreshing, one at a time --------------------------------------------------------------

  /* Runs `work` (returning a promise) when asked; asks during a run make one more run after
   * it, never two at once; `minInterval` spaces runs out. */
  function serialized(work, minInterval) {
    let running = false;
    let again = false;
    let last = 0;
    const state = {
      request() {
        if (running) {
          again = true;
          return;
        }
        const wait = Math.max(0, last + minInterval - Date.now());
        running = true;
        setTimeout(() => {
          last = Date.now();
          Promise.resolve()
            .then(work)
            .catch(() => {})
            .finally(() => {
              running = false;
              if (again) {
                again = false;
                state.request();
              }
            });
        }, wait);
      },
    };
    return state;
  }

  // --- the case page ------------------------------------------------------------------------

  const pending = new Map(); // part name -> fresh element waiting for the agent to leave it

  function busy(element) {
    if (!element) return false;
    if (element.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    return Array.from(element.querySelectorAll("input, textarea, select")).some(edited);
  }

  function edited(field) {
    if (field.type === "hidden") return false;
    if (field.type === "checkbox" || field.type === "radio") {
      return field.checked !== field.defaultChecked;
    }
    if (field.tagName === "SELECT") {
      return Array.from(field.options).some((option) => option.selected !== option.defaultSelected);
    }
    return field.value !== field.defaultValue;
  }

  const PARTS = {
    header: () => document.getElementById("case-header"),
    thread: () => document.querySelector("section.thread"),
    notes: () => document.getElementById("note-list"),
    tasks: () => document.getElementById("task-list"),
    timeline: () => document.getElementById("timeline"),
  };

  function activate(element) {
    if (window.htmx) window.htmx.process(element);
  }

  function replace(name, fresh) {
    const current = PARTS[name]();
    if (!current) return;
    if (name === "thread") {
      mergeThread(current, fresh);
      return;
    }
    if (name !== "timeline" && name !== "notes" && busy(current)) {
      pending.set(name, fresh);
      return;
    }
    pending.delete(name);
    current.replaceWith(fresh);
    activate(fresh);
  }

  /* Add the messages the page does not show yet; the ones shown keep their frames. */
  function mergeThread(current, fresh) {
    const messages = current.querySelectorAll("article.message[id]");
    if (!messages.length) {
      current.replaceWith(fresh);
      activate(fresh);
      return;
    }
    let previous = null;
    fresh.querySelectorAll(":scope > article.message[id]").forEach((article) => {
      const existing = document.getElementById(article.id);
      if (existing) {
        previous = existing;
        return;
      }
      if (previous) previous.after(article);
      else current.querySelector("h2").after(article);
      activate(article);
      previous = article;
    });
    const count = current.querySelector("h2 .count");
    const freshCount = fresh.querySelector("h2 .count");
    if (count && freshCount) count.textContent = freshCount.textContent;
  }

  /* The agent's own changes (htmx requests, the composer's send) swap fresh parts in while a
   * refresh may be under way: a refresh that started before such a change carries older parts
   * and must not overwrite the newer ones. Each local change moves the generation on; a refresh
   * that sees it moved (or a request still out) throws its answer away and tries again. */
  let localGeneration = 0;
  let localRequests = 0;
  document.addEventListener("htmx:beforeRequest", () => {
    localGeneration += 1;
    localRequests += 1;
  });
  document.addEventListener("htmx:afterRequest", () => {
    localGeneration += 1;
    localRequests = Math.max(0, localRequests - 1);
  });
  document.addEventListener("crm:case-changed", (event) => {
    if (event.detail && event.detail.source) localGeneration += 1;
  });
  const RETRY_STALE_MS = 300;

  async function fetchCaseParts() {
    const number = caseNumber();
    if (!number) return;
    const generation = localGeneration;
    const response = await fetch(`/cases/${encodeURIComponent(number)}/live`, {
      headers: { Accept: "text/html" },
      credentials: "same-origin",
    });
    if (!response.ok) return;
    const text = await response.text();
    if (generation !== localGeneration || localRequests > 0) {
      setTimeout(() => caseRefresh.request(), RETRY_STALE_MS);
      return;
    }
    const holder = document.createElement("div");
    holder.innerHTML = text;
    holder.querySelectorAll("template[data-part]").forEach((template) => {
      const fresh = template.content.firstElementChild;
      if (fresh && PARTS[template.dataset.part]) replace(template.dataset.part, fresh);
    });
    document.dispatchEvent(new CustomEvent("crm:case-changed", { detail: { case: number } }));
  }

  const caseRefresh = serialized(fetchCaseParts, 0);

  // A part held back while the agent edited it goes in once they leave it.
  document.addEventListener("focusout", () => {
    setTimeout(() => {
      for (const [name, fresh] of Array.from(pending)) {
        const current = PARTS[name]();
        if (current && !busy(current)) {
          pending.delete(name);
          current.replaceWith(fresh);
          activate(fresh);
        }
      }
    }, 0);
  });

  // A successful htmx swap of a part brings it up to date: nothing is pending for it any more.
  document.addEventListener("htmx:afterSwap", () => {
    for (const name of Array.from(pending.keys())) {
      const current = PARTS[name]();
      if (current && !busy(current)) pending.delete(name);
    }
  });

  function showPresence(agents) {
    const box = document.getElementById("presence");
    if (!box) return;
    box.replaceChildren();
    agents.forEach((agent) => {
      const line = document.createElement("span");
      line.className = `presence-agent state-${agent.state}`;
      line.textContent =
        agent.state === "replying" ? `${agent.name} is replying…` : `${agent.name} is viewing`;
      box.append(line);
    });
    box.classList.toggle("has-agents", agents.length > 0);
  }

  document.addEventListener("crm:composing", (event) => {
    const detail = event.detail || {};
    if (!detail.case || detail.case !== caseNumber()) return;
    const state = detail.active ? "replying" : "viewing";
    if (state === presenceState) return;
    presenceState = state;
    send({ presence: { case: detail.case, state } });
  });

  // --- the queue page -----------------------------------------------------------------------

  let queueHeldBack = false;

  function queueBusy() {
    const results = document.getElementById("results");
    return !!results && !!results.querySelector("input[type=checkbox]:checked");
  }

  async function fetchQueue() {
    if (!window.htmx) return;
    if (queueBusy()) {
      queueHeldBack = true;
      return;
    }
    queueHeldBack = false;
    const work = [
      window.htmx.ajax("GET", window.location.pathname + window.location.search, {
        target: "#results",
        swap: "innerHTML",
      }),
    ];
    const views = document.getElementById("view-list");
    if (views && views.getAttribute("hx-get")) {
      work.push(window.htmx.ajax("GET", views.getAttribute("hx-get"), { target: "#view-list", swap: "none" }));
    }
    await Promise.all(work);
    document.dispatchEvent(new CustomEvent("crm:queue-changed", { detail: {} }));
  }

  const queueRefresh = serialized(fetchQueue, QUEUE_MIN_INTERVAL_MS);

  // Rows were selected when the queue changed: refresh once the selection is cleared.
  document.addEventListener("change", (event) => {
    if (queueHeldBack && event.target.closest && event.target.closest("#results") && !queueBusy()) {
      queueRefresh.request();
    }
  });

  // --- the bell and toasts ------------------------------------------------------------------

  function updateBell(unread) {
    const n = Number(unread) || 0;
    document.querySelectorAll("[data-live-bell]").forEach((bell) => {
      bell.classList.toggle("has-unread", n > 0);
      bell.setAttribute("aria-label", `Notifications, ${n} unread`);
      const count = bell.querySelector("[data-unread-count]");
      if (count) count.textContent = String(n);
    });
  }

  function toastArea() {
    let area = document.getElementById("live-toasts");
    if (!area) {
      area = document.createElement("div");
      area.id = "live-toasts";
      area.className = "live-toasts";
      area.setAttribute("role", "status");
      area.setAttribute("aria-live", "polite");
      document.body.append(area);
    }
    return area;
  }

  function toast(title, url) {
    const item = document.createElement("div");
    item.className = "live-toast";
    if (url && url.startsWith("/") && !url.startsWith("//")) {
      const link = document.createElement("a");
      link.href = url;
      link.textContent = title;
      item.append(link);
    } else {
      item.textContent = title;
    }
    const close = document.createElement("button");
    close.type = "button";
    close.className = "link";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => item.remove());
    item.append(close);
    toastArea().append(item);
    setTimeout(() => item.remove(), TOAST_MS);
  }

  if ("WebSocket" in window) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect);
    else connect();
  }
})();
