/* The composer on the case page (cases/web/composer.py, composer_form.html).
 *
 * - Modes are tabs (Reply, Reply all, Forward, Note); switching fills in the recipients the
 *   new mode has by default unless the agent typed their own, and saves the draft.
 * - Drafts: saved a second after the agent stops typing, at once on a mode change and when
 *   Send is pressed, and with sendBeacon when the page is left, so a reload finds them again.
 * - Send waits UNDO seconds ("Sending in 5 s… Undo") before the form is posted; Undo (or
 *   Escape) keeps everything. Leaving the page inside the window does not send: the reply
 *   is then a saved draft.
 * - Files come from the picker or a drop on the drop zone; they ride with the send (multipart)
 *   and are not kept in drafts.
 * - Dispatches "crm:composing" {case, active} for presence: true on the first input, false
 *   after sending, discarding or 30 s without typing.
 * No inline scripts (CSP): everything is wired here through data attributes.
 */
(function () {
  "use strict";

  const SAVE_DELAY_MS = 1000;
  const IDLE_MS = 30000;
  const MAIL_MODES = ["reply", "reply_all", "forward"];

  const state = {
    form: null,
    files: [],
    saveTimer: null,
    dirty: false,
    saving: null,
    countdown: null,
    sending: false,
    active: false,
    idleTimer: null,
    recipientsTouched: false,
  };

  function form() {
    const current = document.getElementById("composer-form");
    if (current !== state.form) attach(current);
    return current;
  }

  function field(name) {
    const f = form();
    return f ? f.elements.namedItem(name) : null;
  }

  function csrf(f) {
    const input = f.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function say(text, kind) {
    const status = document.getElementById("composer-status");
    if (!status) return;
    status.replaceChildren();
    if (!text) return;
    const p = document.createElement("p");
    p.className = kind === "warning" ? "composer-warning" : "composer-done";
    p.textContent = text;
    status.append(p);
  }

  function showError(text) {
    const slot = document.getElementById("composer-error");
    if (!slot) return;
    slot.replaceChildren();
    if (!text) return;
    const p = document.createElement("p");
    p.className = "form-error";
    p.setAttribute("role", "alert");
    p.textContent = text;
    slot.append(p);
  }

  function draftState(text) {
    const f = form();
    const out = f && f.querySelector("[data-draft-state]");
    if (out) out.textContent = text;
  }

  // --- presence ------------------------------------------------------------------------------
  function composing(active) {
    const f = state.form;
    if (!f) return;
    clearTimeout(state.idleTimer);
    if (active) state.idleTimer = setTimeout(() => composing(false), IDLE_MS);
    if (state.active === active) return;
    state.active = active;
    document.dispatchEvent(new CustomEvent("crm:composing", { detail: { case: f.dataset.case, active: active } }));
  }

  // --- drafts --------------------------------------------------------------------------------
  function draftData(f) {
    const data = new FormData();
    for (const name of ["csrfmiddlewaretoken", "mode", "to", "cc", "bcc", "body", "message"]) {
      const el = f.elements.namedItem(name);
      if (el) data.append(name, el.value);
    }
    return data;
  }

  function scheduleSave() {
    if (state.sending) return; // the send deletes the draft; a late save would bring it back
    state.dirty = true;
    clearTimeout(state.saveTimer);
    state.saveTimer = setTimeout(saveDraft, SAVE_DELAY_MS);
  }

  function saveDraft() {
    clearTimeout(state.saveTimer);
    const f = form();
    if (!f || !state.dirty) return state.saving || Promise.resolve();
    state.dirty = false;
    draftState("Saving draft…");
    const request = fetch(f.dataset.draftUrl, {
      method: "POST",
      body: draftData(f),
      headers: { "X-CSRFToken": csrf(f), "HX-Request": "true" },
      credentials: "same-origin",
    }).then((response) => {
      if (response.ok) {
        draftState("Draft saved");
        return;
      }
      return response.text().then((text) => draftState("Draft not saved: " + (text || response.status)));
    }).catch(() => {
      state.dirty = true;
      draftState("Draft not saved (offline?)");
    });
    state.saving = request;
    return request;
  }

  function saveOnLeave() {
    const f = state.form;
    if (!f || !state.dirty || !navigator.sendBeacon) return;
    state.dirty = false;
    navigator.sendBeacon(f.dataset.draftUrl, draftData(f));
  }

  // --- modes ---------------------------------------------------------------------------------
  function setMode(mode, options) {
    const f = form();
    if (!f) return;
    const previous = f.elements.namedItem("mode").value;
    f.elements.namedItem("mode").value = mode;
    f.querySelectorAll("[role=tab]").forEach((tab) => {
      const selected = tab.dataset.mode === mode;
      tab.setAttribute("aria-selected", selected ? "true" : "false");
      tab.tabIndex = selected ? 0 : -1;
      if (selected) f.querySelector("[role=tabpanel]").setAttribute("aria-labelledby", tab.id);
    });
    const mail = MAIL_MODES.includes(mode);
    f.querySelectorAll("[data-mail-only]").forEach((el) => { el.hidden = !mail; });
    f.querySelectorAll("[data-note-only]").forEach((el) => { el.hidden = mail; });
    const send = f.querySelector("[data-composer-send]");
    send.textContent = mail ? "Send" : "Add note";
    if (mail && !state.recipientsTouched && previous !== mode) {
      f.elements.namedItem("to").value = f.dataset[datasetKey(mode, "to")] || "";
      f.elements.namedItem("cc").value = f.dataset[datasetKey(mode, "cc")] || "";
    }
    if (!(options && options.quiet) && previous !== mode) {
      state.dirty = true;
      saveDraft();
    }
  }

  function datasetKey(mode, which) {
    // data-reply_all-to is dataset.reply_allTo, data-reply-cc is dataset.replyCc
    return mode + which.charAt(0).toUpperCase() + which.slice(1);
  }

  // --- files ---------------------------------------------------------------------------------
  function totalBytes() {
    return state.files.reduce((sum, file) => sum + file.size, 0);
  }

  function humanSize(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return Math.round(bytes / 1024) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function addFiles(list) {
    const f = form();
    if (!f) return;
    for (const file of Array.from(list || [])) state.files.push(file);
    renderFiles();
    const limit = Number(f.dataset.maxBytes);
    if (limit && totalBytes() > limit) {
      showError(`Attachments may add up to ${f.dataset.maxMb} MB; these are ${humanSize(totalBytes())}. Remove some before sending.`);
    } else {
      showError("");
    }
  }

  function renderFiles() {
    const f = form();
    const list = f && f.querySelector("[data-file-list]");
    if (!list) return;
    list.replaceChildren();
    state.files.forEach((file, index) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = `${file.name} (${humanSize(file.size)})`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link";
      remove.dataset.removeFile = String(index);
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove ${file.name}`);
      li.append(name, " ", remove);
      list.append(li);
    });
  }

  // --- sending -------------------------------------------------------------------------------
  function problem(f) {
    const mode = f.elements.namedItem("mode").value;
    const body = f.elements.namedItem("body").value.trim();
    if (!body && mode !== "forward") return mode === "note" ? "A note cannot be empty." : "Write something to send.";
    if (mode === "forward" && !f.elements.namedItem("to").value.trim()) return "A forward needs at least one recipient in To.";
    if (mode === "note" && state.files.length) return "A note cannot carry files: remove them, or send them in a reply.";
    const limit = Number(f.dataset.maxBytes);
    if (limit && totalBytes() > limit) return `Attachments may add up to ${f.dataset.maxMb} MB; these are ${humanSize(totalBytes())}.`;
    return "";
  }

  function startSend() {
    const f = form();
    if (!f || state.countdown || state.sending) return;
    const trouble = problem(f);
    if (trouble) {
      showError(trouble);
      return;
    }
    showError("");
    say("");
    state.dirty = true;
    saveDraft(); // a reload or a closed tab inside the window leaves the reply as a draft
    let left = Number(f.dataset.undoSeconds) || 5;
    const box = f.querySelector("[data-countdown]");
    const text = f.querySelector("[data-countdown-text]");
    const verb = f.elements.namedItem("mode").value === "note" ? "Adding the note" : "Sending";
    const tick = () => { text.textContent = `${verb} in ${left} s…`; };
    tick();
    box.hidden = false;
    f.querySelector("[data-composer-send]").disabled = true;
    f.querySelector("[data-composer-undo]").focus();
    state.countdown = setInterval(() => {
      left -= 1;
      if (left > 0) {
        tick();
        return;
      }
      stopCountdown();
      send();
    }, 1000);
  }

  function stopCountdown() {
    clearInterval(state.countdown);
    state.countdown = null;
    const f = form();
    if (!f) return;
    f.querySelector("[data-countdown]").hidden = true;
    f.querySelector("[data-composer-send]").disabled = false;
  }

  function undo() {
    if (!state.countdown) return;
    stopCountdown();
    say("Not sent. Everything is as you left it.");
    const body = field("body");
    if (body) body.focus();
  }

  function send() {
    const f = form();
    if (!f) return;
    state.sending = true;
    clearTimeout(state.saveTimer);
    f.querySelector("[data-composer-send]").disabled = true;
    const data = new FormData(f);
    for (const file of state.files) data.append("attachments", file, file.name);
    const waitForDraft = state.saving || Promise.resolve();
    waitForDraft.catch(() => {}).then(() => fetch(f.action, {
      method: "POST",
      body: data,
      headers: { "X-CSRFToken": csrf(f), "HX-Request": "true" },
      credentials: "same-origin",
    })).then((response) => response.text().then((html) => ({ response, html })))
      .then(({ response, html }) => {
        state.sending = false;
        if (response.ok) {
          sent(html);
          return;
        }
        f.querySelector("[data-composer-send]").disabled = false;
        if (response.status === 422 || response.status === 400) {
          const slot = document.getElementById("composer-error");
          const parsed = parse(html);
          const error = parsed.querySelector(".form-error");
          showError(error ? error.textContent : "This cannot be sent as it is.");
          if (slot) slot.scrollIntoView({ block: "nearest" });
        } else {
          showError(`Not sent: the server answered ${response.status}. Your text is kept as a draft.`);
        }
      })
      .catch(() => {
        state.sending = false;
        f.querySelector("[data-composer-send]").disabled = false;
        showError("Not sent: the server could not be reached. Your text is kept as a draft.");
      });
  }

  function parse(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }

  function sent(html) {
    const content = parse(html);
    const caseNumber = state.form ? state.form.dataset.case : "";
    composing(false);
    state.files = [];
    state.dirty = false;
    clearTimeout(state.saveTimer);
    content.querySelectorAll("template[data-replace]").forEach((template) => {
      const target = document.querySelector(template.dataset.replace);
      const fresh = template.content.firstElementChild;
      if (!target || !fresh) return;
      target.replaceWith(fresh);
      if (window.htmx) window.htmx.process(fresh);
    });
    const done = content.querySelector("[data-composer-done]");
    const warning = content.querySelector("[data-composer-warning]");
    say(done ? done.textContent : "Sent.");
    if (warning) {
      const status = document.getElementById("composer-status");
      const p = document.createElement("p");
      p.className = "composer-warning";
      p.textContent = warning.textContent;
      status.append(p);
    }
    form();
    document.dispatchEvent(new CustomEvent("crm:case-changed", { detail: { case: caseNumber, source: "composer" } }));
  }

  function discard() {
    const f = form();
    if (!f) return;
    stopCountdown();
    clearTimeout(state.saveTimer);
    state.dirty = false;
    const data = new FormData();
    data.append("csrfmiddlewaretoken", csrf(f));
    fetch(f.dataset.discardUrl, {
      method: "POST",
      body: data,
      headers: { "X-CSRFToken": csrf(f), "HX-Request": "true" },
      credentials: "same-origin",
    }).then(() => fetch(f.dataset.url, { headers: { "HX-Request": "true" }, credentials: "same-origin" }))
      .then((response) => response.text())
      .then((html) => {
        const fresh = parse(html).firstElementChild;
        const current = document.getElementById("composer-form");
        if (fresh && current) {
          current.replaceWith(fresh);
          if (window.htmx) window.htmx.process(fresh);
        }
        state.files = [];
        form();
        composing(false);
        say("Draft discarded.");
      })
      .catch(() => showError("The draft could not be discarded; try again."));
  }

  // --- canned responses ----------------------------------------------------------------------
  function insertMacro() {
    const f = form();
    const select = f && f.elements.namedItem("macro");
    if (!select || !select.value) {
      showError("Choose a canned response first.");
      return;
    }
    fetch(f.dataset.macroUrl + encodeURIComponent(select.value), {
      headers: { "HX-Request": "true" },
      credentials: "same-origin",
    }).then((response) => response.json().then((json) => ({ response, json })))
      .then(({ response, json }) => {
        if (!response.ok) {
          showError(json.error || "That canned response cannot be used here.");
          return;
        }
        showError("");
        const body = f.elements.namedItem("body");
        const start = body.selectionStart ?? body.value.length;
        const end = body.selectionEnd ?? body.value.length;
        const before = body.value.slice(0, start);
        const after = body.value.slice(end);
        const gap = before && !before.endsWith("\n") ? "\n\n" : "";
        body.value = before + gap + json.text + after;
        const caret = (before + gap + json.text).length;
        body.focus();
        body.setSelectionRange(caret, caret);
        const option = select.selectedOptions[0];
        const actions = option ? option.dataset.actions : "";
        const apply = f.querySelector("[data-apply-macro]");
        if (apply) {
          apply.hidden = !actions;
          apply.querySelector("[data-macro-actions]").textContent = actions || "";
          if (!actions) apply.querySelector("input").checked = false;
        }
        composing(true);
        scheduleSave();
      })
      .catch(() => showError("The canned response could not be loaded."));
  }

  // --- the message answered ------------------------------------------------------------------
  function answerOther() {
    // Recipients depend on the message answered: let the server fill them in again.
    const f = form();
    if (!state.recipientsTouched) {
      f.elements.namedItem("to").value = "";
      f.elements.namedItem("cc").value = "";
    }
    state.dirty = true;
    saveDraft().then(() => fetch(f.dataset.url, { headers: { "HX-Request": "true" }, credentials: "same-origin" }))
      .then((response) => response.text())
      .then((html) => {
        const fresh = parse(html).firstElementChild;
        const current = document.getElementById("composer-form");
        if (!fresh || !current) return;
        const files = state.files;
        current.replaceWith(fresh);
        if (window.htmx) window.htmx.process(fresh);
        form();
        state.files = files;
        renderFiles();
        const select = document.getElementById("composer-message");
        if (select) select.focus();
      });
  }

  // --- wiring --------------------------------------------------------------------------------
  function attach(f) {
    state.form = f;
    state.recipientsTouched = false;
    state.dirty = false;
    if (!f) return;
    clearInterval(state.countdown);
    state.countdown = null;
    state.sending = false;
    renderFiles();
  }

  document.addEventListener("input", (event) => {
    const f = event.target.closest && event.target.closest("#composer-form");
    if (!f) return;
    form();
    if (event.target.matches("[data-recipient]")) state.recipientsTouched = true;
    if (event.target.matches("[data-file-picker]")) return;
    if (event.target.matches("textarea, input[type=text]")) composing(true);
    scheduleSave();
  });

  document.addEventListener("change", (event) => {
    const f = event.target.closest && event.target.closest("#composer-form");
    if (!f) return;
    form();
    if (event.target.matches("[data-file-picker]")) {
      addFiles(event.target.files);
      event.target.value = "";
    } else if (event.target.matches("#composer-message")) {
      answerOther();
    } else if (event.target.matches("#composer-macro")) {
      const apply = f.querySelector("[data-apply-macro]");
      if (apply) {
        apply.hidden = true;
        apply.querySelector("input").checked = false;
      }
    }
  });

  document.addEventListener("click", (event) => {
    const f = event.target.closest && event.target.closest("#composer-form");
    if (!f) return;
    form();
    const tab = event.target.closest("[role=tab][data-mode]");
    if (tab) {
      setMode(tab.dataset.mode);
      return;
    }
    if (event.target.closest("[data-composer-undo]")) undo();
    else if (event.target.closest("[data-composer-discard]")) discard();
    else if (event.target.closest("[data-composer-insert]")) insertMacro();
    else if (event.target.closest("[data-remove-file]")) {
      state.files.splice(Number(event.target.closest("[data-remove-file]").dataset.removeFile), 1);
      renderFiles();
      showError("");
      const picker = f.querySelector("[data-file-picker]");
      if (picker) picker.focus();
    }
  });

  document.addEventListener("submit", (event) => {
    if (!event.target.matches("#composer-form")) return;
    event.preventDefault();
    form();
    startSend();
  });

  document.addEventListener("keydown", (event) => {
    const f = event.target.closest && event.target.closest("#composer-form");
    if (!f) return;
    form();
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      startSend();
    } else if (event.key === "Escape" && state.countdown) {
      event.preventDefault();
      undo();
    } else if ((event.key === "ArrowRight" || event.key === "ArrowLeft") && event.target.matches("[role=tab]")) {
      const tabs = Array.from(f.querySelectorAll("[role=tab]"));
      const index = tabs.indexOf(event.target) + (event.key === "ArrowRight" ? 1 : -1);
      const next = tabs[(index + tabs.length) % tabs.length];
      next.focus();
      setMode(next.dataset.mode);
    }
  });

  // Drag and drop onto the drop zone (the whole composer accepts a drop, the zone shows it).
  function dropZone(event) {
    const f = event.target.closest && event.target.closest("#composer-form");
    return f ? f.querySelector("[data-drop-zone]") : null;
  }

  ["dragenter", "dragover"].forEach((type) => {
    document.addEventListener(type, (event) => {
      const zone = dropZone(event);
      if (!zone || zone.hidden) return;
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  document.addEventListener("dragleave", (event) => {
    const zone = dropZone(event);
    if (zone && !zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    const zone = dropZone(event);
    if (!zone || zone.hidden) return;
    event.preventDefault();
    zone.classList.remove("dragging");
    form();
    if (event.dataTransfer && event.dataTransfer.files.length) addFiles(event.dataTransfer.files);
  });

  // The form arrives after the page (hx-trigger="load"); a restored draft means writing again.
  document.addEventListener("htmx:afterSettle", () => {
    const f = document.getElementById("composer-form");
    if (f && f !== state.form) form();
  });

  window.addEventListener("pagehide", saveOnLeave);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") saveOnLeave();
  });
})();
