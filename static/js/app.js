/* Keyboard shortcuts, list navigation and bulk selection for every page.
 *
 * No inline scripts (the CSP forbids them): pages declare behaviour with data attributes.
 *  - data-shortcut="a" (or a two-key sequence "g q") on a link, button or field: the key clicks
 *    it (fields get focus); data-shortcut-label names it in the "?" help.
 *  - data-list-nav on a table: j/k move through rows that carry data-href, Enter or o opens one,
 *    x ticks its checkbox.
 *  - data-select-all="NAME" on a checkbox: ticks every checkbox named NAME in its form;
 *    data-selected-count="NAME" shows how many are ticked.
 */
(function () {
  "use strict";

  const TYPING = "input, textarea, select, [contenteditable=''], [contenteditable='true']";
  let pending = "";
  let pendingTimer = null;

  function visible(el) {
    return !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  }

  function shortcutTargets() {
    return Array.from(document.querySelectorAll("[data-shortcut]")).filter(visible);
  }

  function activate(el) {
    if (el.matches("input, textarea, select")) {
      el.focus();
      if (el.select && el.type !== "checkbox") el.select();
    } else {
      el.click();
    }
  }

  function showHelp() {
    const dialog = document.getElementById("shortcuts");
    if (!dialog) return;
    const body = dialog.querySelector("tbody");
    body.replaceChildren();
    const seen = new Set();
    const rows = shortcutTargets().map((el) => [el.dataset.shortcut, el.dataset.shortcutLabel || el.textContent.trim()]);
    if (document.querySelector("[data-list-nav]")) {
      rows.push(["j / k", "Next / previous row"], ["o or Enter", "Open the row"], ["x", "Select the row"]);
    }
    for (const [key, label] of rows) {
      if (seen.has(key)) continue;
      seen.add(key);
      const tr = document.createElement("tr");
      const k = document.createElement("td");
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      k.append(kbd);
      const l = document.createElement("td");
      l.textContent = label;
      tr.append(k, l);
      body.append(tr);
    }
    if (!dialog.open) dialog.showModal();
  }

  // --- list navigation -------------------------------------------------------------------
  function listRows() {
    const table = document.querySelector("[data-list-nav]");
    return table ? Array.from(table.querySelectorAll("tr[data-href]")) : [];
  }

  function moveCurrent(step) {
    const rows = listRows();
    if (!rows.length) return false;
    let index = rows.findIndex((row) => row.classList.contains("current"));
    rows.forEach((row) => row.classList.remove("current"));
    index = index === -1 ? (step > 0 ? 0 : rows.length - 1) : Math.min(rows.length - 1, Math.max(0, index + step));
    rows[index].classList.add("current");
    rows[index].setAttribute("aria-current", "true");
    rows[index].scrollIntoView({ block: "nearest" });
    const link = rows[index].querySelector("a");
    if (link) link.focus({ preventScroll: true });
    return true;
  }

  function currentRow() {
    return listRows().find((row) => row.classList.contains("current"));
  }

  function listKey(key) {
    if (key === "j") return moveCurrent(1);
    if (key === "k") return moveCurrent(-1);
    const row = currentRow();
    if (!row) return false;
    if (key === "o" || key === "Enter") {
      window.location.assign(row.dataset.href);
      return true;
    }
    if (key === "x") {
      const box = row.querySelector("input[type=checkbox]");
      if (box) {
        box.click();
        return true;
      }
    }
    return false;
  }

  // --- key handling ----------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest && event.target.closest(TYPING)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (document.querySelector("dialog[open]") && event.key !== "Escape") return;
    const key = event.key;
    if (key === "?") {
      event.preventDefault();
      showHelp();
      return;
    }
    const sequence = pending ? pending + " " + key : key;
    const targets = shortcutTargets();
    const exact = targets.find((el) => el.dataset.shortcut === sequence);
    if (exact) {
      event.preventDefault();
      pending = "";
      activate(exact);
      return;
    }
    if (!pending && targets.some((el) => el.dataset.shortcut.startsWith(key + " "))) {
      pending = key;
      clearTimeout(pendingTimer);
      pendingTimer = setTimeout(() => { pending = ""; }, 1200);
      return;
    }
    pending = "";
    if (listKey(key)) event.preventDefault();
  });

  document.addEventListener("click", (event) => {
    const trigger = event.target.closest("[data-action='show-shortcuts']");
    if (trigger) showHelp();
    const row = event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a, button, input, label, select")) {
      window.location.assign(row.dataset.href);
    }
  });

  // --- bulk selection --------------------------------------------------------------------
  function updateCounts(root) {
    root.querySelectorAll("[data-selected-count]").forEach((out) => {
      const name = out.dataset.selectedCount;
      const n = document.querySelectorAll(`input[type=checkbox][name='${name}']:checked`).length;
      out.textContent = n ? `${n} selected` : "";
      const bar = out.closest("[data-bulk-bar]");
      if (bar) bar.hidden = n === 0;
    });
  }

  document.addEventListener("change", (event) => {
    const all = event.target.closest("[data-select-all]");
    if (all) {
      const name = all.dataset.selectAll;
      document.querySelectorAll(`input[type=checkbox][name='${name}']`).forEach((box) => {
        box.checked = all.checked;
      });
    }
    if (event.target.matches("input[type=checkbox]")) updateCounts(document);
  });

  document.addEventListener("DOMContentLoaded", () => updateCounts(document));
  document.addEventListener("htmx:afterSettle", () => updateCounts(document));
})();
