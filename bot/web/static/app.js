/* The Mini App shell (/app): sign-in by Telegram init data, the viewer's tabs, the theme, texts.
 *
 * No build step, no libraries. The tab modules (app-seller.js, app-buyer.js, app-operator.js)
 * call PaybotApp.register(name, {render: function (el, app) {...}}); the shell asks
 * /app/api/me which tabs this viewer gets and renders the chosen one into <main id="view">.
 *
 * Inside Telegram the init data comes from Telegram.WebApp, or from the URL fragment as
 * Telegram passes it (tgWebAppData, tgWebAppThemeParams): the page works before, and without,
 * telegram-web-app.js. Theme colours are Telegram's CSS variables (--tg-theme-*), set here
 * from the fragment and kept up to date by Telegram's script when it loads.
 *
 * Text goes into the page as text (textContent), never as HTML: names and titles are the
 * sellers' and buyers' own input.
 */
(function () {
  "use strict";

  var INIT_KEY = "paybot.tgInitData";
  var THEME_KEY = "paybot.tgTheme";
  var views = {};
  var order = [];
  var current = null;
  var initData = null;
  var lang = document.documentElement.lang || "en";
  var TEXTS = window.PAYBOT_TEXTS || { en: {} };
  var PLURAL = window.PAYBOT_PLURAL || {};

  function hashParams() {
    try { return new URLSearchParams(window.location.hash.slice(1)); } catch (e) { return new URLSearchParams(""); }
  }
  function session(key, value) {
    try {
      if (value === undefined) return sessionStorage.getItem(key);
      sessionStorage.setItem(key, value);
    } catch (e) { /* private mode */ }
    return null;
  }
  function tg() { return (window.Telegram && window.Telegram.WebApp) || null; }

  // --- texts -------------------------------------------------------------------------------

  function fill(text, params) {
    if (params) {
      Object.keys(params).forEach(function (k) { text = text.split("{" + k + "}").join(String(params[k])); });
    }
    return text;
  }
  function t(key, params) {
    var table = TEXTS[lang] || TEXTS.en;
    var text = table[key] || TEXTS.en[key] || key;
    return fill(Array.isArray(text) ? text[0] : text, params);
  }
  function tn(key, n, params) {
    var table = TEXTS[lang] || TEXTS.en;
    var forms = table[key] || TEXTS.en[key] || [key];
    if (!Array.isArray(forms)) forms = [forms];
    var rule = PLURAL[lang] || PLURAL.en;
    var text = forms[rule ? rule(n) : (n === 1 ? 0 : 1)] || forms[forms.length - 1];
    return fill(text, params);
  }

  // --- theme -------------------------------------------------------------------------------

  var THEME_VARS = ["bg_color", "text_color", "hint_color", "link_color", "button_color",
    "button_text_color", "secondary_bg_color", "header_bg_color", "accent_text_color",
    "section_bg_color", "section_header_text_color", "subtitle_text_color",
    "destructive_text_color"];
  var HEX = /^#[0-9a-fA-F]{6}$/;

  function applyTheme(params) {
    if (!params) return;
    var root = document.documentElement.style;
    THEME_VARS.forEach(function (name) {
      var value = params[name];
      if (typeof value === "string" && HEX.test(value)) {
        root.setProperty("--tg-theme-" + name.replace(/_/g, "-"), value);
      }
    });
    document.documentElement.dataset.theme = isDark(params.bg_color) ? "dark" : "light";
  }
  function isDark(hex) {
    if (!hex || !HEX.test(hex)) {
      return !!(window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches);
    }
    var r = parseInt(hex.slice(1, 3), 16), g = parseInt(hex.slice(3, 5), 16), b = parseInt(hex.slice(5, 7), 16);
    return (0.299 * r + 0.587 * g + 0.114 * b) < 128;
  }
  function readTheme() {
    var raw = hashParams().get("tgWebAppThemeParams") || session(THEME_KEY);
    if (!raw) return null;
    session(THEME_KEY, raw);
    try { return JSON.parse(raw); } catch (e) { return null; }
  }
  // The colours in use, as #rrggbb (for server-drawn charts).
  function theme() {
    var cs = getComputedStyle(document.documentElement);
    function color(name, fallback) {
      var v = (cs.getPropertyValue("--tg-theme-" + name) || "").trim();
      return HEX.test(v) ? v.toLowerCase() : fallback;
    }
    var dark = document.documentElement.dataset.theme === "dark";
    return {
      dark: dark,
      bg: color("bg-color", dark ? "#17212b" : "#ffffff"),
      text: color("text-color", dark ? "#f5f5f5" : "#000000"),
      hint: color("hint-color", dark ? "#708499" : "#999999"),
      accent: color("button-color", dark ? "#5288c1" : "#2481cc"),
    };
  }

  // --- Telegram ----------------------------------------------------------------------------

  function readInitData() {
    var app = tg();
    var data = (app && app.initData) || hashParams().get("tgWebAppData") || session(INIT_KEY);
    if (data) session(INIT_KEY, data);
    return data || null;
  }
  function telegramLanguage(data) {
    try {
      var user = JSON.parse(new URLSearchParams(data).get("user") || "{}");
      return (user.language_code || "").split("-")[0].toLowerCase();
    } catch (e) { return ""; }
  }
  function startParam(data) {
    try { return new URLSearchParams(data).get("start_param") || ""; } catch (e) { return ""; }
  }
  function loadTelegramScript() {
    var s = document.createElement("script");
    s.src = "https://telegram.org/js/telegram-web-app.js";
    s.async = true;
    s.onload = function () {
      var app = tg();
      if (!app) return;
      try { app.ready(); app.expand(); } catch (e) { /* older clients */ }
      try {
        applyTheme(app.themeParams);
        app.onEvent("themeChanged", function () { applyTheme(app.themeParams); rerender(); });
      } catch (e) { /* older clients */ }
      if (!initData && app.initData) { initData = app.initData; session(INIT_KEY, initData); start(); }
    };
    s.onerror = function () { if (!initData) message(t("app_open_in_telegram"), "error"); };
    document.head.appendChild(s);
  }
  function openLink(url) {
    var app = tg();
    if (app && /^https:\/\/t\.me\//.test(url)) { try { app.openTelegramLink(url); return; } catch (e) { /* below */ } }
    if (app && /^https:/.test(url)) { try { app.openLink(url); return; } catch (e) { /* below */ } }
    window.location.href = url;
  }
  // A file for the viewer: Telegram's download sheet when the client has it, else the browser.
  function download(url, name) {
    var app = tg();
    var absolute = new URL(url, window.location.href).href;
    if (app && app.downloadFile) {
      try { app.downloadFile({ url: absolute, file_name: name }); return; } catch (e) { /* below */ }
    }
    var a = document.createElement("a");
    a.href = absolute;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  // --- requests ----------------------------------------------------------------------------

  function withQuery(path, query) {
    var params = new URLSearchParams();
    Object.keys(query || {}).forEach(function (k) {
      var v = query[k];
      if (v !== undefined && v !== null && v !== "") params.set(k, v);
    });
    if (!params.has("lang")) params.set("lang", lang);
    return path + (path.indexOf("?") < 0 ? "?" : "&") + params.toString();
  }
  function request(path, opts) {
    opts = opts || {};
    var headers = { Authorization: "tma " + (initData || "") };
    var init = { method: opts.method || "GET", headers: headers, credentials: "same-origin" };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    return fetch(withQuery(path, opts.query), init).then(function (r) {
      if (r.ok) return r;
      return r.json().catch(function () { return {}; }).then(function (body) {
        var err = (body && body.error) || {};
        var e = new Error(err.message || t("err_generic"));
        e.status = r.status;
        e.code = err.code || "http_" + r.status;
        throw e;
      });
    }, function () {
      var e = new Error(t("err_unreadable"));
      e.status = 0;
      e.code = "network";
      throw e;
    });
  }
  // JSON of a view route; rejects with an Error carrying .status, .code and the server's sentence.
  function api(path, opts) { return request(path, opts).then(function (r) { return r.json(); }); }
  // An image or file behind sign-in, as an object URL (for <img src>).
  function blob(path, query) {
    return request(path, { query: query }).then(function (r) { return r.blob(); })
      .then(function (b) { return URL.createObjectURL(b); });
  }

  // --- DOM ---------------------------------------------------------------------------------

  // el("p", {class: "x", text: "..."}, [children]); attributes as given, text as text.
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.slice(0, 2) === "on" && typeof v === "function") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    });
    (children || []).forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function message(text, kind) {
    var box = document.getElementById("app-message");
    box.textContent = text || "";
    box.hidden = !text;
    box.className = "app-message" + (kind ? " " + kind : "");
  }
  function failed(err) { message(err && err.message ? err.message : t("err_generic"), "error"); }

  // --- tabs --------------------------------------------------------------------------------

  var ME = null;

  function show(name) {
    if (!views[name] || !ME || ME.tabs.indexOf(name) < 0) return;
    current = name;
    var nav = document.getElementById("tabs");
    Array.prototype.forEach.call(nav.children, function (b) {
      var on = b.dataset.view === name;
      b.setAttribute("aria-selected", on ? "true" : "false");
      b.classList.toggle("active", on);
    });
    rerender();
  }
  function rerender() {
    if (!current) return;
    var main = document.getElementById("view");
    main.textContent = "";
    main.dataset.view = current;
    message("");
    var box = el("section", { class: "view view-" + current });
    main.appendChild(box);
    try {
      views[current].render(box, App);
    } catch (e) {
      failed(e);
    }
  }
  function tabTitle(name) {
    // Named in full, so that `make messages` finds each key.
    return { seller: t("app_tab_seller"), buyer: t("app_tab_buyer"), operator: t("app_tab_operator") }[name] || name;
  }
  function buildTabs() {
    var nav = document.getElementById("tabs");
    nav.textContent = "";
    ME.tabs.forEach(function (name) {
      if (!views[name]) return;
      nav.appendChild(el("button", {
        type: "button", role: "tab", class: "tab", "data-view": name, id: "tab-" + name,
        text: tabTitle(name), onclick: function () { show(name); },
      }));
    });
    nav.hidden = nav.children.length < 2;
  }

  function start() {
    if (!initData) {
      message(t("app_open_in_telegram"), "error");
      return;
    }
    var tl = telegramLanguage(initData);
    if (TEXTS[tl]) lang = tl;
    document.documentElement.lang = lang;
    document.getElementById("app-title").textContent = t("app_title");
    document.title = t("app_title");
    message(t("app_loading"));
    api("/app/api/me").then(function (me) {
      ME = me;
      App.me = me;
      buildTabs();
      var wanted = new URLSearchParams(window.location.search).get("view") || startParam(initData);
      show(me.tabs.indexOf(wanted) >= 0 ? wanted : me.tabs[0]);
    }, failed);
  }

  var App = {
    register: function (name, view) { views[name] = view; order.push(name); },
    api: api,
    blob: blob,
    t: t,
    tn: tn,
    el: el,
    theme: theme,
    message: message,
    failed: failed,
    show: show,
    openLink: openLink,
    download: download,
    withQuery: withQuery,
    get lang() { return lang; },
    me: null,
  };
  window.PaybotApp = App;

  applyTheme(readTheme());
  initData = readInitData();
  var inTelegram = !!(initData || hashParams().get("tgWebAppVersion") || window.TelegramWebviewProxy);
  if (inTelegram) loadTelegramScript();
  // Tab modules load after this file (defer keeps the order): start once they have registered.
  document.addEventListener("DOMContentLoaded", function () { if (initData) start(); else if (!inTelegram) start(); });
})();
