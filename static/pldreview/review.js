/* Review workspace keyboard shortcuts: j/k next/previous, a approve, e edit, r reject, u undo, ? help.
   Decisions are signings: a and r go to the reason; Tab reaches the password; Ctrl+Enter signs.
   Plain JS, no build. Keys are ignored while typing; everything here also exists as a link or button. */
(function () {
  "use strict";

  function isTyping(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  function helpBox() { return document.getElementById("shortcut-help"); }
  var lastFocus = null;

  function setHelp(show) {
    var box = helpBox();
    if (!box) return;
    if (show) {
      lastFocus = document.activeElement;
      box.hidden = false;
      var close = box.querySelector("[data-help-close]");
      if (close) close.focus();
    } else {
      box.hidden = true;
      if (lastFocus && lastFocus.focus) lastFocus.focus();
    }
  }

  function helpOpen() { var box = helpBox(); return box && !box.hidden; }

  function follow(name) {
    var link = document.querySelector('[data-shortcut="' + name + '"]');
    if (link) { link.click(); return true; }
    return false;
  }

  function moveInQueue(step) {
    var links = Array.prototype.slice.call(document.querySelectorAll("[data-queue-link]"));
    if (!links.length) return false;
    var index = links.indexOf(document.activeElement);
    var next = index === -1 ? (step > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, index + step));
    links[next].focus();
    links.forEach(function (l) { l.closest("tr").classList.remove("current"); });
    links[next].closest("tr").classList.add("current");
    return true;
  }

  function submit(form) {
    if (!form) return;
    if (form.requestSubmit) form.requestSubmit(); else form.submit();
  }

  document.addEventListener("click", function (ev) {
    var target = ev.target.closest ? ev.target.closest("[data-help-open], [data-help-close]") : null;
    if (!target) {
      if (helpOpen() && ev.target === helpBox()) setHelp(false);
      return;
    }
    setHelp(target.hasAttribute("data-help-open"));
  });

  document.addEventListener("keydown", function (ev) {
    var target = ev.target;
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter" && isTyping(target) && target.form) {
      ev.preventDefault();
      submit(target.form);
      return;
    }
    if (ev.key === "Escape") {
      if (helpOpen()) { setHelp(false); ev.preventDefault(); }
      else if (isTyping(target)) { target.blur(); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || isTyping(target)) return;
    if (ev.key === "?") { setHelp(!helpOpen()); ev.preventDefault(); return; }
    if (helpOpen()) return;

    var handled = false;
    switch (ev.key) {
      case "j": handled = follow("next") || moveInQueue(1); break;
      case "k": handled = follow("previous") || moveInQueue(-1); break;
      case "a": {
        // Approving signs with the password, so the key opens the form instead of submitting it. A disabled
        // Approve button means the reviewer may not approve (four eyes); the shortcut obeys it.
        var approve = document.getElementById("approve-form");
        var approveReason = document.getElementById("approve-reason");
        if (approve && approveReason && !approve.querySelector("button[type=submit][disabled]")) {
          approveReason.focus(); handled = true;
        }
        break;
      }
      case "e": {
        var details = document.getElementById("edit-details");
        var text = document.getElementById("edit-text");
        if (details && text) { details.open = true; text.focus(); handled = true; }
        break;
      }
      case "r": {
        var reason = document.getElementById("reject-reason");
        if (reason) { reason.focus(); handled = true; }
        break;
      }
      case "u": {
        var undo = document.querySelector("[data-undo]");
        if (undo) { undo.click(); handled = true; }
        break;
      }
    }
    if (handled) ev.preventDefault();
  });

  // After htmx swaps in the next rule, put focus on its title so screen readers announce it
  // and the shortcuts keep working without a mouse.
  document.addEventListener("htmx:afterSettle", function (ev) {
    if (!ev.detail || !ev.detail.target) return;
    if (ev.detail.target.id === "ruleset") {
      // The pressed button may be gone (a decided proposal): move focus to the message that says what happened.
      var message = document.getElementById("ruleset-message");
      if (message) message.focus();
      return;
    }
    if (ev.detail.target.id !== "review-workspace") return;
    // A refused signing comes back with what was typed; put the cursor back in the password box.
    var refused = ev.detail.target.querySelector("[data-focus-after-swap]");
    if (refused) { refused.focus(); return; }
    // A reviewer who pressed a shortcut before the swap settled is already typing a reason; leave the focus there.
    // Not a password box, though: htmx puts focus back on the new rule's empty one after a signed decision.
    var active = document.activeElement;
    if (isTyping(active) && active.type !== "password") return;
    var title = document.getElementById("rule-title") || ev.detail.target.querySelector("h1");
    if (title) { title.setAttribute("tabindex", "-1"); title.focus({ preventScroll: true }); }
  });
})();
