/* The tasks board: drag a card to another column, or pick a status in the card's menu (the
 * keyboard way), and the task's status changes.
 *
 * Either way the card's status is posted to its data-status-url (with the CSRF token of its
 * own form). The server answers with the card as it now is; the card is put into the column
 * its data-status names. A refused move (the reason is on the card) therefore lands the card
 * back where it came from. Counts in the column headings move with the card.
 *
 * Without JavaScript the card's menu is a plain form with a "Move" button.
 */
(function () {
  "use strict";

  const board = document.querySelector("[data-board]");
  if (!board) return;
  const announcer = document.getElementById("board-status");
  let dragged = null;

  function announce(message) {
    if (announcer) announcer.textContent = message;
  }

  function column(status) {
    return board.querySelector(`[data-column="${status}"]`);
  }

  function columnOf(card) {
    return card.closest("[data-column]");
  }

  function adjustCount(col, delta) {
    if (!col) return;
    const count = col.querySelector("[data-column-count]");
    if (count) count.textContent = String(Math.max(0, Number(count.textContent || 0) + delta));
    const empty = col.querySelector("[data-empty-note]");
    if (empty) empty.hidden = col.querySelectorAll(".board-card").length > 0;
  }

  /* Put `card` at the top of the column for `status`, keeping the counts right. */
  function place(card, status) {
    const from = columnOf(card);
    const to = column(status);
    if (!to || from === to) return;
    to.querySelector("[data-cards]").prepend(card);
    adjustCount(from, -1);
    adjustCount(to, 1);
  }

  function subjectOf(card) {
    const subject = card.querySelector(".subject");
    return subject ? subject.textContent.trim() : "The task";
  }

  function labelOf(status) {
    const col = column(status);
    const heading = col && col.querySelector("h2");
    return heading ? heading.firstChild.textContent.trim() : status;
  }

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.querySelector(".board-card");
  }

  /* One request per card at a time: a status picked while the card is still being saved
   * waits for that answer and then goes from the card the answer drew. */
  const inFlight = new Set();
  const wanted = new Map();

  async function move(card, status) {
    const id = card.dataset.task;
    if (inFlight.has(id)) {
      wanted.set(id, status);
      return;
    }
    inFlight.add(id);
    try {
      await moveNow(card, status);
    } finally {
      inFlight.delete(id);
    }
    if (wanted.has(id)) {
      const next = wanted.get(id);
      wanted.delete(id);
      const current = document.getElementById(card.id);
      if (current) await move(current, next);
    }
  }

  async function moveNow(card, status) {
    const form = card.querySelector("form.card-status");
    const original = card.dataset.status;
    if (!form || status === original) return;
    const body = new FormData(form);
    body.set("status", status);
    // Moving a node drops its focus: an agent on the keyboard keeps it on the card's menu.
    const focusedId = card.contains(document.activeElement) ? document.activeElement.id : null;
    place(card, status); // at once; the answer says where it really belongs
    refocus(focusedId, card);
    card.classList.add("saving");
    let fresh = null;
    let problem = "";
    try {
      const response = await fetch(card.dataset.statusUrl, {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { "HX-Request": "true", "X-CSRFToken": body.get("csrfmiddlewaretoken") || "" },
      });
      if (response.ok) {
        fresh = fragment(await response.text());
      } else if (response.status === 404) {
        problem = "This task is gone or no longer yours to see.";
      } else {
        problem = `The status could not be saved (error ${response.status}).`;
      }
    } catch (error) {
      problem = "The status could not be saved: the server did not answer.";
    }
    card.classList.remove("saving");
    if (!fresh) {
      place(card, original);
      const select = card.querySelector("[data-card-status]");
      if (select) select.value = original;
      refocus(focusedId, card);
      showProblem(card, problem);
      announce(problem);
      return;
    }
    const now = fresh.dataset.status;
    const keepFocus = focusedId && (card.contains(document.activeElement) || document.activeElement === document.body);
    place(card, now);
    card.replaceWith(fresh);
    if (keepFocus) refocus(focusedId, fresh);
    const error = fresh.querySelector(".form-error");
    announce(error ? error.textContent.trim() : `“${subjectOf(fresh)}” is now ${labelOf(now)}.`);
  }

  function refocus(id, card) {
    if (!id) return;
    const again = document.getElementById(id);
    if (again && card.contains(again) && document.activeElement !== again) again.focus();
  }

  function showProblem(card, message) {
    let slot = card.querySelector(".form-error");
    if (!slot) {
      slot = document.createElement("p");
      slot.className = "form-error";
      slot.setAttribute("role", "alert");
      card.append(slot);
    }
    slot.textContent = message;
    card.classList.add("refused");
  }

  // --- the keyboard way: the card's status menu ----------------------------------------------
  board.addEventListener("change", (event) => {
    const select = event.target.closest("[data-card-status]");
    if (!select) return;
    const card = select.closest(".board-card");
    if (card) move(card, select.value);
  });
  board.addEventListener("submit", (event) => {
    const form = event.target.closest("form.card-status");
    if (!form) return;
    event.preventDefault();
    const card = form.closest(".board-card");
    const select = form.querySelector("[data-card-status]");
    if (card && select) move(card, select.value);
  });

  // --- drag and drop ---------------------------------------------------------------------------
  function clearTargets() {
    board.querySelectorAll("[data-column]").forEach((col) => {
      col.classList.remove("drop-target", "drop-allowed", "drop-refused");
    });
  }

  board.addEventListener("dragstart", (event) => {
    const card = event.target.closest && event.target.closest(".board-card");
    if (!card) return;
    dragged = card;
    card.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.dataset.task);
    const allowed = (card.dataset.allowed || "").split(" ");
    board.querySelectorAll("[data-column]").forEach((col) => {
      if (col === columnOf(card)) return;
      col.classList.add(allowed.includes(col.dataset.column) ? "drop-allowed" : "drop-refused");
    });
  });

  board.addEventListener("dragover", (event) => {
    const col = event.target.closest && event.target.closest("[data-column]");
    if (!col || !dragged) return;
    event.preventDefault(); // any column takes the drop; the server says whether the move is allowed
    event.dataTransfer.dropEffect = "move";
    board.querySelectorAll(".drop-target").forEach((other) => {
      if (other !== col) other.classList.remove("drop-target");
    });
    col.classList.add("drop-target");
  });

  board.addEventListener("dragleave", (event) => {
    const col = event.target.closest && event.target.closest("[data-column]");
    if (col && !col.contains(event.relatedTarget)) col.classList.remove("drop-target");
  });

  board.addEventListener("drop", (event) => {
    const col = event.target.closest && event.target.closest("[data-column]");
    if (!col || !dragged) return;
    event.preventDefault();
    const card = dragged;
    dragged = null;
    clearTargets();
    card.classList.remove("dragging");
    move(card, col.dataset.column);
  });

  board.addEventListener("dragend", () => {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
    clearTargets();
  });
})();
