/*
 * AI 새마을 아카데미 (AI Saemaul Academy) — small progressive enhancements.
 *
 * Plain ES2017, no framework, no inline handlers (the CSP forbids them).
 * Load with: <script src=".../js/academy.js" defer></script>
 *
 *  - [data-progress="42"]      -> style.width = "42%" (clamped to 0..100) and
 *      aria-valuenow="42" on the element with role="progressbar": the bar
 *      itself or its .progress wrapper (Bootstrap 5.3 markup); if neither has
 *      the role, the bar gets role="progressbar" + aria-valuemin/max.
 *  - <form data-confirm="...">  -> confirm(message) before the form is submitted;
 *    <button data-confirm="..."> on a submit button overrides the form's message.
 *  - <select class="js-autosubmit"> -> submits its form on change.
 *  - <html> gets the class "js" so CSS can hide no-JS fallbacks (.js-hide).
 *  - Escape closes the navigation menu of a narrow window (Bootstrap's collapse)
 *    and gives the focus back to the button that opened it.
 *
 * Setting element.style.width through the CSSOM is allowed by
 * style-src 'self'; only style="" attributes in markup are blocked.
 */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  // ------------------------------------------------------------ progress bars
  function clampPercent(raw) {
    var value = parseFloat(String(raw).replace("%", "").trim());
    if (!isFinite(value)) {
      return null;
    }
    return Math.min(100, Math.max(0, value));
  }

  function formatPercent(value) {
    // At most one decimal place, no trailing ".0".
    return String(Math.round(value * 10) / 10);
  }

  // The element that carries role="progressbar": the bar itself, or (Bootstrap
  // 5.3 markup) its .progress wrapper. If neither has the role, the bar gets it.
  function progressHost(el) {
    if (el.getAttribute("role") === "progressbar") {
      return el;
    }
    var parent = el.parentElement;
    if (parent && parent.getAttribute("role") === "progressbar") {
      return parent;
    }
    el.setAttribute("role", "progressbar");
    return el;
  }

  function applyProgress(root) {
    var scope = root || document;
    var bars = scope.querySelectorAll("[data-progress]");
    Array.prototype.forEach.call(bars, function (el) {
      var value = clampPercent(el.getAttribute("data-progress"));
      if (value === null) {
        return;
      }
      var text = formatPercent(value);
      el.style.width = text + "%";
      var host = progressHost(el);
      if (!host.hasAttribute("aria-valuemin")) {
        host.setAttribute("aria-valuemin", "0");
      }
      if (!host.hasAttribute("aria-valuemax")) {
        host.setAttribute("aria-valuemax", "100");
      }
      host.setAttribute("aria-valuenow", text);
      if (host !== el) {
        // Keep the inner bar out of the accessibility tree's numbers.
        el.removeAttribute("aria-valuenow");
      }
    });
  }

  // ------------------------------------------------------------ confirmations
  function confirmMessage(form, submitter) {
    if (submitter && submitter.hasAttribute && submitter.hasAttribute("data-confirm")) {
      return submitter.getAttribute("data-confirm");
    }
    if (form.hasAttribute("data-confirm")) {
      return form.getAttribute("data-confirm");
    }
    return null;
  }

  // Remember which submit button was used, for browsers without SubmitEvent.submitter.
  var lastSubmitter = null;
  document.addEventListener(
    "click",
    function (event) {
      var target = event.target;
      var button = target && target.closest ? target.closest("button, input[type=submit], input[type=image]") : null;
      lastSubmitter =
        button && button.form && (button.type === "submit" || button.type === "image") ? button : null;
    },
    true
  );

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) {
      return;
    }
    var submitter = event.submitter || (lastSubmitter && lastSubmitter.form === form ? lastSubmitter : null);
    lastSubmitter = null;
    var message = confirmMessage(form, submitter);
    if (message !== null && message !== "" && !window.confirm(message)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  });

  // ------------------------------------------------------------ auto-submit
  function submitForm(form) {
    if (typeof form.requestSubmit === "function") {
      // Fires the submit event, so validation and data-confirm still apply.
      form.requestSubmit();
      return;
    }
    var event;
    try {
      event = new Event("submit", { bubbles: true, cancelable: true });
    } catch (e) {
      event = document.createEvent("Event");
      event.initEvent("submit", true, true);
    }
    if (form.dispatchEvent(event)) {
      form.submit();
    }
  }

  document.addEventListener("change", function (event) {
    var el = event.target;
    if (!el || !el.classList || !el.classList.contains("js-autosubmit")) {
      return;
    }
    var form = el.form || (el.closest ? el.closest("form") : null);
    if (form) {
      submitForm(form);
    }
  });

  // ------------------------------------------------------------ menu: Escape closes it
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !window.bootstrap) {
      return;
    }
    var menu = document.querySelector(".navbar-collapse.show");
    if (!menu) {
      return;
    }
    window.bootstrap.Collapse.getOrCreateInstance(menu, { toggle: false }).hide();
    var toggler = document.querySelector('[data-bs-target="#' + menu.id + '"]');
    if (toggler) {
      toggler.focus();
    }
  });

  // ------------------------------------------------------------ start
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      applyProgress(document);
    });
  } else {
    applyProgress(document);
  }

  // Exposed for pages that insert content later (optional).
  window.Academy = Object.freeze({ applyProgress: applyProgress });
})();

// ------------------------------------------------------------ grading status
// An element with data-status-url is polled until grading finishes, then the
// page reloads to show the scores (no inline script: CSP allows only this file).
(function () {
  "use strict";

  function poll(el) {
    var url = el.getAttribute("data-status-url");
    var delay = 700;
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (body && body.finished) {
            window.location.reload();
            return;
          }
          if (body && body.status) {
            el.setAttribute("data-status", body.status);
          }
          delay = Math.min(delay * 1.3, 5000);
          window.setTimeout(tick, delay);
        })
        .catch(function () { window.setTimeout(tick, 5000); });
    }
    window.setTimeout(tick, delay);
  }

  // Drag and drop onto a [data-dropzone] fills its file input.
  function dropzone(zone) {
    var input = zone.querySelector("input[type=file]");
    if (!input) { return; }
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("dropzone-active"); });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dropzone-active"); });
    });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
      }
    });
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-status-url]"), poll);
    Array.prototype.forEach.call(document.querySelectorAll("[data-dropzone]"), dropzone);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

// ------------------------------------------------------------ lab launch
// [data-lab-status-url] is polled while the lab starts: the bar, the message and the
// place in line follow; when the lab is ready the browser goes to the notebook.
(function () {
  "use strict";

  function follow(el) {
    var url = el.getAttribute("data-lab-status-url");
    var bar = el.querySelector("[data-lab-bar]");
    var message = el.querySelector("[data-lab-message]");
    var problem = el.querySelector("[data-lab-problem]");
    var cpu = el.querySelector("[data-lab-cpu]");
    function show(body) {
      if (bar) {
        var value = Math.max(0, Math.min(100, Number(body.progress) || 0));
        bar.style.width = value + "%";
        bar.setAttribute("aria-valuenow", String(value));
      }
      if (message && body.message) { message.textContent = body.message; }
      if (problem) {
        problem.textContent = body.hub_error || "";
        problem.hidden = !body.hub_error;
      }
      if (cpu) { cpu.hidden = body.state !== "queued"; }
      el.setAttribute("data-lab-state", body.state);
    }
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (!body) { window.setTimeout(tick, 3000); return; }
          show(body);
          if (body.state === "running" && body.url) {
            window.location.assign(body.url);
            return;
          }
          if (body.finished) {
            window.location.reload();
            return;
          }
          window.setTimeout(tick, body.state === "queued" ? 3000 : 400);
        })
        .catch(function () { window.setTimeout(tick, 3000); });
    }
    window.setTimeout(tick, 200);
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-lab-status-url]"), follow);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

/*
 * The grading queue ([data-grading-queue]): "j" goes to the next item and "k" to the previous
 * one (the links [data-queue-next] / [data-queue-prev]), unless a text box, a select or a
 * button has the keyboard (Escape leaves it) or a modifier key is held.
 */
(function () {
  "use strict";
  var TYPING = /^(INPUT|TEXTAREA|SELECT|BUTTON)$/;
  document.addEventListener("keydown", function (event) {
    if (!document.querySelector("[data-grading-queue]")) { return; }
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
    var target = event.target;
    if (target && (TYPING.test(target.tagName) || target.isContentEditable)) {
      if (event.key === "Escape" && target.blur) { target.blur(); }  // then j and k work again
      return;
    }
    var link = null;
    if (event.key === "j") { link = document.querySelector("[data-queue-next]"); }
    if (event.key === "k") { link = document.querySelector("[data-queue-prev]"); }
    if (link) {
      event.preventDefault();
      window.location.assign(link.href);
    }
  });
})();
