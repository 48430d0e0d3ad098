/* Plan page script: inside Telegram, a button per period that subscribes with the Mini App's
 * init data; the answer opens the first period's pay page (paid there from the balance, which
 * activates the subscription) or says until when the trial runs. In a plain browser nothing
 * changes: the page's "Subscribe in Telegram" link does it. No build step, no libraries.
 */
(function () {
  "use strict";

  var dataEl = document.getElementById("plan-data");
  if (!dataEl) return;
  var DATA = JSON.parse(dataEl.textContent);
  var INIT_KEY = "paybot.tgInitData"; // shared with pay.js: the pay page opens signed in

  function $(id) { return document.getElementById(id); }
  function hashParam(name) {
    var hash = window.location.hash.slice(1);
    if (!hash) return null;
    try { return new URLSearchParams(hash).get(name); } catch (e) { return null; }
  }
  function stored() { try { return sessionStorage.getItem(INIT_KEY); } catch (e) { return null; } }
  function store(value) { try { sessionStorage.setItem(INIT_KEY, value); } catch (e) { /* private mode */ } }
  function tg() { return (window.Telegram && window.Telegram.WebApp) || null; }

  function inTelegram() {
    return !!(hashParam("tgWebAppData") || hashParam("tgWebAppVersion") || stored() ||
      window.TelegramWebviewProxy || (window.external && "notify" in window.external));
  }

  function message(text, kind) {
    var el = $("sub-message");
    el.textContent = text || "";
    el.className = "message" + (kind ? " " + kind : "");
  }

  var initData = null;
  var busy = false;

  function subscribe(months, button) {
    if (busy) return;
    busy = true;
    button.disabled = true;
    message("");
    fetch(DATA.subscribe, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "tma " + initData },
      body: JSON.stringify({ months: months }),
      credentials: "same-origin"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (r.ok && body.pay_url) {
          window.location.href = body.pay_url; // pay.js finds the init data in sessionStorage
          return;
        }
        if (r.ok) message(body.message || "", "ok");
        else message((body.error && body.error.message) || DATA.err_generic, "error");
        busy = false;
        button.disabled = false;
      });
    }).catch(function () {
      // No answer: asking again is safe (the same plan and period answers the same invoice).
      busy = false;
      button.disabled = false;
      message(DATA.err_generic, "error");
    });
  }

  function startMiniApp(data) {
    initData = data;
    store(data);
    var lang = "";
    try {
      var user = JSON.parse(new URLSearchParams(data).get("user") || "{}");
      lang = (user.language_code || "").split("-")[0].toLowerCase();
    } catch (e) { /* keep the page's language */ }
    // The page is in the browser's language; the Mini App speaks the Telegram user's.
    if (lang && lang !== DATA.lang && (lang === "en" || lang === "ru") &&
        !/[?&]lang=/.test(window.location.search)) {
      var url = new URL(window.location.href);
      url.searchParams.set("lang", lang);
      window.location.replace(url.toString());
      return;
    }
    $("sub-telegram").hidden = true;
    $("sub-miniapp").hidden = false;
  }

  var buttons = document.querySelectorAll("[data-months]");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].addEventListener("click", function (ev) {
      var b = ev.currentTarget;
      subscribe(parseInt(b.getAttribute("data-months"), 10), b);
    });
  }
  var link = $("telegram-link");
  link.addEventListener("click", function (ev) {
    var app = tg();
    if (!app) return;
    try { app.openTelegramLink(link.href); ev.preventDefault(); } catch (e) { /* the link */ }
  });

  var found = (tg() && tg().initData) || hashParam("tgWebAppData") || stored();
  if (found) startMiniApp(found);
  if (inTelegram()) {
    var s = document.createElement("script");
    s.src = "https://telegram.org/js/telegram-web-app.js";
    s.async = true;
    s.onload = function () {
      var app = tg();
      if (!app) return;
      try { app.ready(); app.expand(); } catch (e) { /* older clients */ }
      if (!initData && app.initData) startMiniApp(app.initData);
    };
    document.head.appendChild(s);
  }
})();
