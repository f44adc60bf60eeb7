/* The case workspace: message frames sized to their content, "Load images", forms that clear
 * after a successful htmx post, and focus kept on the field an agent just changed.
 *
 * The message frames are sandboxed without scripts, so they cannot report their own height:
 * the frame allows same origin only so that this script (in the parent) can measure it.
 */
(function () {
  "use strict";

  function fitFrame(frame) {
    let doc;
    try {
      doc = frame.contentDocument;
    } catch (error) {
      return;
    }
    if (!doc || !doc.documentElement) return;
    frame.style.height = doc.documentElement.scrollHeight + "px";
  }

  function watchFrame(frame) {
    fitFrame(frame);
    const doc = frame.contentDocument;
    if (!doc || !doc.documentElement || frame._watched === doc) return;
    frame._watched = doc;
    if (window.ResizeObserver) {
      new ResizeObserver(() => fitFrame(frame)).observe(doc.documentElement);
    }
    doc.addEventListener("toggle", () => fitFrame(frame), true);
    doc.querySelectorAll("img").forEach((img) => img.addEventListener("load", () => fitFrame(frame)));
  }

  // `load` does not bubble, but it can be caught on the way down.
  document.addEventListener("load", (event) => {
    if (event.target.matches && event.target.matches("iframe.mail-body")) watchFrame(event.target);
  }, true);

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("iframe.mail-body").forEach((frame) => {
      if (frame.contentDocument && frame.contentDocument.readyState === "complete") watchFrame(frame);
    });
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-load-images]");
    if (!button) return;
    const frame = document.getElementById(button.dataset.loadImages);
    if (!frame) return;
    frame.src = frame.dataset.imagesSrc;
    const note = button.closest(".images-note");
    if (note) note.textContent = "Remote images loaded for this message.";
  });

  // Clear a form once what it posted was accepted (a refusal retargets to the form's error slot).
  document.addEventListener("htmx:afterRequest", (event) => {
    const form = event.detail.elt;
    if (!form.matches || !form.matches("form[data-reset-on-success]")) return;
    if (event.detail.successful && !event.detail.xhr.getResponseHeader("HX-Retarget")) form.reset();
  });

  // A swap replaces the field that was just changed: give its successor the focus back.
  let focusedId = null;
  document.addEventListener("htmx:beforeSwap", () => {
    const active = document.activeElement;
    focusedId = active && active.id ? active.id : null;
  });
  document.addEventListener("htmx:afterSettle", () => {
    if (!focusedId) return;
    const again = document.getElementById(focusedId);
    focusedId = null;
    if (again && document.activeElement !== again) again.focus({ preventScroll: true });
  });
})();
