/* Pay page script: live status, Mini App payment, copy buttons. No build step, no libraries.
 *
 * The page is fully rendered by the server; this script only improves it:
 *  - polls /pay/<id>/status so the status flips without a reload (and shows a guest's claim);
 *  - shows the viewer's own payer comment (QR, wallet links, copy field) and lets a guest
 *    leave a @handle or an e-mail;
 *  - inside Telegram (init data in Telegram.WebApp or in the URL fragment), shows the balance
 *    and "Pay from balance", authenticated by `Authorization: tma <initData>`, and the card and
 *    Stars buttons (Telegram Payments: an invoice link opened with Telegram.WebApp.openInvoice);
 *    a plain browser keeps the server's "Pay by card" forms;
 *  - telegram-web-app.js is loaded only inside Telegram, and nothing depends on it loading;
 *  - TON Connect (the @tonconnect/ui bundle served from /static/pay/, installed by
 *    scripts/vendor.sh): a connected wallet is asked to send the exact amount with this
 *    payer's comment (TON), or the jetton transfer the server builds for the buyer's own USDT
 *    wallet; without the bundle the QR and the wallet links stay as they are.
 */
(function () {
  "use strict";

  // The TON Connect bundle sits next to this script (no version: it changes with the lockfile).
  var SELF = document.currentScript && document.currentScript.src;
  var TC_BUNDLE = SELF ? SELF.replace(/pay\.js(\?.*)?$/, "tonconnect-ui.min.js") : null;
  var dataEl = document.getElementById("pay-data");
  if (!dataEl) return;
  var DATA = JSON.parse(dataEl.textContent);
  DATA.texts = window.PAYBOT_TEXTS;
  DATA.plural = window.PAYBOT_PLURAL || {};
  if (!DATA.texts) return; // texts.js did not load: the server-rendered page stays as it is
  var inv = DATA.invoice;
  var lang = DATA.lang;
  var INIT_KEY = "paybot.tgInitData";
  var FINAL = { paid: true, cancelled: true, expired: true, void: true, uncollectible: true };

  function $(id) { return document.getElementById(id); }
  function show(el, on) { if (el) el.hidden = !on; }
  function T(key, params) {
    var table = DATA.texts[lang] || DATA.texts.en;
    var text = table[key] || DATA.texts.en[key] || key;
    return fill(text, params);
  }
  // A counted text: the form the language's plural rule (from the catalog) picks for n.
  function TN(key, n, params) {
    var table = DATA.texts[lang] || DATA.texts.en;
    var forms = table[key] || DATA.texts.en[key] || [key];
    var rule = DATA.plural[lang] || DATA.plural.en;
    var text = forms[rule ? rule(n) : (n === 1 ? 0 : 1)] || forms[forms.length - 1];
    return fill(text, params);
  }
  function fill(text, params) {
    if (params) {
      Object.keys(params).forEach(function (k) { text = text.split("{" + k + "}").join(params[k]); });
    }
    return text;
  }

  // --- Telegram Mini App -------------------------------------------------------------------

  function hashParam(name) {
    var hash = window.location.hash.slice(1);
    if (!hash) return null;
    try { return new URLSearchParams(hash).get(name); } catch (e) { return null; }
  }
  function stored() { try { return sessionStorage.getItem(INIT_KEY); } catch (e) { return null; } }
  function store(value) { try { sessionStorage.setItem(INIT_KEY, value); } catch (e) { /* private mode */ } }

  function tg() { return (window.Telegram && window.Telegram.WebApp) || null; }

  function readInitData() {
    var app = tg();
    var data = (app && app.initData) || hashParam("tgWebAppData") || stored();
    if (data) store(data);
    return data || null;
  }

  function inTelegram() {
    return !!(hashParam("tgWebAppData") || hashParam("tgWebAppVersion") || stored() ||
      window.TelegramWebviewProxy || (window.external && "notify" in window.external));
  }

  function telegramLanguage(initData) {
    try {
      var user = JSON.parse(new URLSearchParams(initData).get("user") || "{}");
      return (user.language_code || "").split("-")[0].toLowerCase();
    } catch (e) { return ""; }
  }

  var initData = null;

  function loadTelegramScript() {
    // Only inside Telegram: a guest's browser never contacts telegram.org.
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

  function openLink(url, event) {
    var app = tg();
    if (!app) return; // plain browser: the <a href> does it
    try {
      if (/^https:\/\/t\.me\//.test(url)) app.openTelegramLink(url);
      else if (/^https:/.test(url)) app.openLink(url);
      else return;
      if (event) event.preventDefault();
    } catch (e) { /* fall back to the link */ }
  }

  function haptic(kind) {
    var app = tg();
    try { if (app && app.HapticFeedback) app.HapticFeedback.notificationOccurred(kind); } catch (e) { /* ignore */ }
  }

  // --- texts -------------------------------------------------------------------------------

  function applyTexts() {
    document.documentElement.lang = lang;
    document.title = T("page_title", { title: inv.title });
    var nodes = document.querySelectorAll("[data-t]");
    for (var i = 0; i < nodes.length; i++) nodes[i].textContent = T(nodes[i].getAttribute("data-t"));
    var qr = $("qr");
    if (qr) qr.alt = T("qr_alt");
  }

  function localTime() {
    var el = $("expires");
    if (!el) return;
    try {
      el.textContent = new Date(el.getAttribute("datetime")).toLocaleString(lang, {
        dateStyle: "medium", timeStyle: "short"
      });
    } catch (e) { /* keep the server's UTC text */ }
  }

  // --- rendering the state -----------------------------------------------------------------

  var viewer = null; // {balance, is_seller} when signed in through the Mini App
  var claim = DATA.claim;
  var payer = DATA.payer; // the guest browser's own tag, contact and Telegram link

  function render() {
    var status = inv.status;
    var pending = status === "pending";
    document.body.setAttribute("data-status", status);
    var badge = $("status");
    badge.className = "badge status-" + status;
    var statusKey = "status_" + status; // a built key: listed in bot/web/i18n.py's DYNAMIC
    badge.textContent = T(statusKey);
    if (inv.kind === "multi_use") $("uses").textContent = TN("uses", inv.uses, { uses: inv.uses });
    var received = $("received");
    show(received, !!inv.ton_received);
    if (inv.ton_received) received.textContent = T("received", { amount: inv.ton_received.display });

    show($("paid"), status === "paid");
    show($("draft"), status === "draft");
    show($("expires-row"), pending);
    show($("due-row"), !!inv.due_at && (pending || status === "draft"));
    renderFigures(pending || status === "draft");
    show($("login"), pending && !viewer);
    var canTon = pending && !!inv.pay_ton;
    show($("ton-unavailable"), pending && !inv.pay_ton);
    // In the Mini App the TON block opens from its button; guests see it at once.
    // A guest sees it once the status route has given this browser its own comment (the
    // page itself is shared and carries the bare one, for browsers without scripts).
    show($("ton"), canTon && (viewer ? tonOpen : !!payer));
    show($("pay-ton-toggle"), canTon && !!viewer && !tonOpen);

    show($("miniapp"), !!viewer);
    if (viewer) {
      var own = !!viewer.is_seller;
      $("balance").textContent = T("your_balance", { amount: viewer.balance.display });
      show($("own-invoice"), own && pending);
      show($("pay-balance"), pending && !own);
      if (own) show($("pay-ton-toggle"), false);
      // Who paid: told to the invoice's seller only (the server sends it to nobody else).
      show($("paid-by"), !!viewer.paid_by);
      if (viewer.paid_by) $("paid-by").textContent = T("paid_by", { who: viewer.paid_by });
      renderRails(pending && !own ? inv.pay_rails || [] : []);
    }
    // Inside Telegram cards go through Telegram Payments; a browser posts the card form.
    show($("card"), pending && !viewer && !inTelegram() && (inv.pay_card || []).length > 0);

    // The comment, QR and wallet links are this viewer's own (their payer tag).
    if (inv.pay_ton) {
      $("comment").textContent = inv.comment;
      var qr = $("qr");
      if (qr && qr.getAttribute("src") !== inv.links.qr_svg) qr.setAttribute("src", inv.links.qr_svg);
      $("qr-link").href = inv.pay_ton.ton;
      $("ton-link").href = inv.pay_ton.ton;
      $("tonkeeper-link").href = inv.pay_ton.tonkeeper;
    }
    var usdt = pending ? inv.pay_usdt : null;
    show($("usdt"), !!usdt);
    if (usdt) {
      $("usdt-value").textContent = usdt.amount.text;
      $("usdt-link").href = usdt.ton;
      $("usdt-tonkeeper-link").href = usdt.tonkeeper;
    }
    renderTonConnect(canTon && !$("ton").hidden);

    show($("contact"), pending && !!payer && !viewer);
    if (payer) {
      show($("bind-link"), !payer.bound && !!payer.bind_url);
      if (payer.bind_url) $("bind-link").href = payer.bind_url;
      show($("bound"), !!payer.bound);
      var saved = $("contact-saved");
      show(saved, !!payer.contact);
      if (payer.contact) saved.textContent = T("contact_saved", { contact: payer.contact });
    }

    if (railPaid && status === "paid") { railPaid = false; message(T("paid_ok"), "ok"); }

    var claimBox = $("claim");
    show(claimBox, !!claim);
    if (claim) {
      var link = $("claim-link");
      show(link, !!claim.url);
      show($("claimed"), !!claim.claimed);
      if (claim.url) link.href = claim.url;
    }
  }

  // One button per card currency and for Stars, each with the amount its quote will lock.
  var railsShown = "";
  function renderRails(offers) {
    var box = $("rails");
    var key = JSON.stringify(offers) + lang;
    if (key === railsShown) return;
    railsShown = key;
    while (box.firstChild) box.removeChild(box.firstChild);
    offers.forEach(function (offer) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "btn rail";
      b.setAttribute("data-rail", offer.rail);
      b.setAttribute("data-currency", offer.currency);
      b.textContent = railLabel(offer, offer.amount.display, offer.amount.text);
      b.addEventListener("click", function () { payRail(offer, b); });
      box.appendChild(b);
    });
  }
  function railLabel(offer, display, text) {
    return offer.rail === "stars" ? T("pay_stars", { n: text })
      : T("pay_card_amount", { amount: display });
  }

  // The totals as the server formatted them (the PDF's figures): a payment recorded since the
  // page was rendered shows at once.
  function renderFigures(open) {
    $("amount").textContent = (open ? inv.amount_due : inv.amount).display;
    var rows = inv.document.totals;
    var body = $("totals-body");
    show($("totals"), rows.length > 1);
    if (rows.length < 2) return;
    while (body.firstChild) body.removeChild(body.firstChild);
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.className = row.key + (row.strong ? " strong" : "");
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = row.label;
      var td = document.createElement("td");
      td.textContent = row.amount;
      tr.appendChild(th);
      tr.appendChild(td);
      body.appendChild(tr);
    });
  }

  // --- polling -----------------------------------------------------------------------------

  var pollTimer = null;
  var pollStarted = Date.now();

  function authHeaders() {
    return initData ? { Authorization: "tma " + initData } : {};
  }

  function sessionExpired() {
    // Stale or rejected init data: fall back to the guest view and say why.
    initData = null;
    viewer = null;
    try { sessionStorage.removeItem(INIT_KEY); } catch (e) { /* ignore */ }
    render();
    message(T("session_expired"), "error");
  }

  function applyState(body) {
    if (body.invoice) inv = body.invoice;
    if ("claim" in body) claim = body.claim;
    if (body.payer) payer = body.payer;
    if (body.viewer) viewer = body.viewer;
    render();
  }

  // The first answer a person's page asks for records "viewed" (once, and never the seller's
  // own look, which the server knows by the Mini App's init data). The page's GET does not:
  // link previews and crawlers fetch it too.
  var viewed = false;

  function refresh() {
    // A guest without a tag asks for one; once it has one, polls only read.
    var query = [];
    if (!payer && !initData) query.push("guest=new");
    // Inside Telegram the Mini App's init data says who looks; wait for it.
    if (!viewed && (initData || !inTelegram())) { viewed = true; query.push("view=1"); }
    var url = inv.links.status + (query.length ? "?" + query.join("&") : "");
    return fetch(url, {
      headers: authHeaders(), cache: "no-store", credentials: "same-origin"
    }).then(function (r) {
      if (r.status === 401) { sessionExpired(); return null; }
      return r.ok ? r.json() : null;
    }).then(function (body) { if (body) applyState(body); })
      .catch(function () { /* offline for a moment: the next poll retries */ });
  }

  function schedulePoll() {
    clearTimeout(pollTimer);
    // A guest's claim is written in the same transaction as "paid": nothing more will come.
    if (FINAL[inv.status]) return;
    var elapsed = Date.now() - pollStarted;
    var delay = DATA.poll_ms;
    if (document.hidden) delay *= 5;
    if (elapsed > 10 * 60 * 1000) delay = Math.max(delay, 30000);
    pollTimer = setTimeout(function () { refresh().then(schedulePoll); }, delay);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh().then(schedulePoll);
  });

  // --- paying from the balance -------------------------------------------------------------

  // One key per payment intent. It is kept until the server gives a definite answer (2xx or
  // 4xx), in memory and in sessionStorage (a reload of the Mini App is the same intent): an
  // unknown outcome (5xx, 429, no answer) is asked again with the SAME key, which replays
  // the first outcome, so a retry never pays twice. Only after a definite answer does the
  // next tap make a new key (a new purchase of a multi-use invoice).
  var KEY_STORE = "paybot.payKey." + inv.id;
  var AUTO_RETRIES = 3;
  var attemptKey = storedKey();
  var busy = false;
  var tonOpen = false;

  function newKey() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return "web-" + Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }
  function storedKey() { try { return sessionStorage.getItem(KEY_STORE); } catch (e) { return null; } }
  function keepKey(key) {
    attemptKey = key;
    try {
      if (key) sessionStorage.setItem(KEY_STORE, key);
      else sessionStorage.removeItem(KEY_STORE);
    } catch (e) { /* private mode: memory only */ }
  }

  function message(text, kind) {
    var el = $("pay-message");
    el.textContent = text || "";
    el.className = "message" + (kind ? " " + kind : "");
  }

  function pay() {
    if (busy || !initData) return;
    busy = true;
    $("pay-balance").disabled = true;
    show($("topup-link"), false);
    message(T("paying"));
    if (!attemptKey) keepKey(newKey());
    send(attemptKey, 0);
  }

  function done() {
    busy = false;
    $("pay-balance").disabled = false;
  }

  function send(key, tries) {
    fetch(inv.links.pay, {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()),
      body: JSON.stringify({ idempotency_key: key }),
      credentials: "same-origin"
    }).then(function (r) {
      if (r.status >= 500 || r.status === 429) {
        unknown(key, tries, parseInt(r.headers.get("Retry-After"), 10));
        return;
      }
      return r.json().catch(function () { return {}; }).then(function (body) {
        definite(r, body);
        done();
      });
    }).catch(function () {
      unknown(key, tries, NaN); // no answer at all: offline, or the server restarting
    });
  }

  function unknown(key, tries, retryAfter) {
    if (tries < AUTO_RETRIES) {
      var seconds = Math.min(isNaN(retryAfter) ? tries + 1 : Math.max(retryAfter, 0.2), 5);
      setTimeout(function () { send(key, tries + 1); }, seconds * 1000);
      return;
    }
    // Still no answer: say so, keep the key; the next tap asks about the same payment.
    message(T("err_retry"), "error");
    done();
  }

  function definite(r, body) {
    keepKey(null); // this intent is over: the next tap is a new one
    if (r.ok) {
      applyState(body);
      message(T("paid_ok"), "ok");
      haptic("success");
      return;
    }
    if (r.status === 401) { sessionExpired(); return; }
    var err = body.error || {};
    message(err.message || T("err_generic"), "error");
    haptic("error");
    if (err.code === "insufficient_funds") show($("topup-link"), true);
    if (r.status === 409 || r.status === 410 || r.status === 403) refresh();
  }

  // --- paying by card or in Stars (Telegram Payments) ---------------------------------------

  // The server locks the price (a quote) and makes an invoice link; Telegram's own sheet takes
  // the money; the ledger settles on Telegram's successful_payment, and the status polls show it.
  var railBusy = false;
  var railPaid = false; // Telegram said "paid": say "complete" once the ledger shows it

  function payRail(offer, button) {
    if (railBusy || !initData) return;
    var app = tg();
    if (!app || !app.openInvoice) { message(T("err_update_telegram"), "error"); return; }
    railBusy = true;
    button.disabled = true;
    message(T("opening_invoice"));
    var finish = function () { railBusy = false; button.disabled = false; };
    fetch(inv.links.invoice_link, {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()),
      body: JSON.stringify({ rail: offer.rail, currency: offer.currency }),
      credentials: "same-origin"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) {
          finish();
          if (r.status === 401) { sessionExpired(); return; }
          message((body.error && body.error.message) || T("err_generic"), "error");
          if (r.status === 409 || r.status === 410) refresh();
          return;
        }
        // The price just locked (it may differ from the button's if the rate moved).
        button.textContent = railLabel(offer, body.display, body.text);
        message("");
        try {
          app.openInvoice(body.url, function (status) { invoiceClosed(status); finish(); });
        } catch (e) { finish(); message(T("err_update_telegram"), "error"); }
      });
    }).catch(function () { finish(); message(T("err_retry"), "error"); });
  }

  function invoiceClosed(status) {
    if (status === "paid") {
      // Telegram took the money; the ledger settles when its update arrives: poll for it.
      railPaid = true;
      message(T("rail_paid"), "ok");
      haptic("success");
      refresh().then(schedulePoll);
    } else if (status === "failed") {
      message(T("rail_failed"), "error");
      haptic("error");
    } else if (status === "pending") {
      message(T("rail_pending"));
      refresh().then(schedulePoll);
    } else {
      message(""); // cancelled: the buyer closed the sheet
    }
  }

  // --- TON Connect --------------------------------------------------------------------------

  // The bundle loads once the TON block is on screen; the wallet is asked only on a tap.
  var tcui = null;
  var tcState = "idle"; // idle | loading | ready | failed
  var tcPending = null; // the asset a tap asked for while the wallet was being connected
  var tcBusy = false;

  function tcMessage(text, kind) {
    var el = $("tc-message");
    el.textContent = text || "";
    el.className = "message" + (kind ? " " + kind : "");
  }

  function renderTonConnect(wanted) {
    if (wanted && tcState === "idle") loadTonConnect();
    var on = wanted && tcState === "ready";
    show($("tonconnect"), on);
    if (!on) return;
    var ton = $("tc-pay-ton");
    ton.textContent = T("tonconnect_pay_ton", { amount: inv.ton.display });
    show(ton, !!inv.tonconnect);
    var usdt = inv.pay_usdt;
    var usdtButton = $("tc-pay-usdt");
    show(usdtButton, !!(usdt && usdt.connect));
    if (usdt) usdtButton.textContent = T("tonconnect_pay_usdt", { amount: usdt.amount.display });
    var account = tcui.connected && tcui.account;
    show($("tc-wallet"), !!account);
    if (account) $("tc-account").textContent = shortAddress(account.address);
  }

  function shortAddress(raw) {
    return raw.length > 16 ? raw.slice(0, 8) + "…" + raw.slice(-6) : raw;
  }

  function loadTonConnect() {
    if (!TC_BUNDLE) { tcState = "failed"; return; }
    tcState = "loading";
    var s = document.createElement("script");
    s.src = TC_BUNDLE;
    s.async = true;
    s.onload = function () {
      try {
        var options = { manifestUrl: inv.links.tonconnect_manifest,
                        language: lang === "ru" ? "ru" : "en", analytics: { mode: "off" } };
        // Inside Telegram the wallet sends the buyer back to the bot's chat.
        if (inTelegram() && DATA.bot) options.actionsConfiguration = { twaReturnUrl: "https://t.me/" + DATA.bot };
        tcui = new window.TON_CONNECT_UI.TonConnectUI(options);
        tcui.onStatusChange(function (wallet) {
          render();
          if (wallet && tcPending) { var asset = tcPending; tcPending = null; tcSend(asset); }
        });
        if (tcui.onModalStateChange) {
          tcui.onModalStateChange(function (state) {
            if (state && state.status === "closed" && !tcui.connected) tcPending = null;
          });
        }
        tcState = "ready";
      } catch (e) { tcState = "failed"; }
      render();
    };
    s.onerror = function () { tcState = "failed"; };
    document.head.appendChild(s);
  }

  function tcPay(asset) {
    if (!tcui || tcBusy) return;
    tcMessage("");
    if (!tcui.connected) { tcPending = asset; tcui.openModal(); return; }
    tcSend(asset);
  }

  // TON: the page has the message (no request before the wallet opens, so no popup blocker
  // steps in). USDT: the server builds the jetton transfer for this wallet's own jetton wallet.
  function tcSend(asset) {
    var owner = tcui.account && tcui.account.address;
    if (asset === "TON") {
      if (!inv.tonconnect) return;
      var tx = { validUntil: Math.floor(Date.now() / 1000) + 300,
                 network: inv.tonconnect.network, messages: [inv.tonconnect.message] };
      if (owner) tx.from = owner;
      tcSign(tx);
      return;
    }
    tcBusy = true;
    tcMessage(T("paying"));
    fetch(inv.links.tonconnect, {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()),
      body: JSON.stringify({ asset: asset, owner: owner }),
      credentials: "same-origin"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        tcBusy = false;
        if (r.ok) { tcMessage(""); tcSign(body); return; }
        if (r.status === 401) { sessionExpired(); return; }
        tcMessage((body.error && body.error.message) || T("tonconnect_unavailable"), "error");
        if (r.status === 409 || r.status === 410) refresh();
      });
    }).catch(function () { tcBusy = false; tcMessage(T("tonconnect_unavailable"), "error"); });
  }

  function tcSign(tx) {
    tcBusy = true;
    tcui.sendTransaction(tx).then(function () {
      tcBusy = false;
      tcMessage(T("tonconnect_sent"), "ok");
      haptic("success");
      refresh().then(schedulePoll);
    }, function () {
      tcBusy = false;
      tcMessage(T("tonconnect_rejected"), "error");
    });
  }

  function startMiniApp(data) {
    initData = data;
    var tgLang = telegramLanguage(data);
    if (tgLang && DATA.texts[tgLang] && tgLang !== lang) { lang = tgLang; applyTexts(); localTime(); }
    refresh().then(schedulePoll);
  }

  // --- wiring ------------------------------------------------------------------------------

  function copy(id, button) {
    var text = $(id).textContent;
    var done = function () {
      button.textContent = T("copied");
      setTimeout(function () { button.textContent = T("copy"); }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { legacyCopy(id); done(); });
    } else { legacyCopy(id); done(); }
  }
  function legacyCopy(id) {
    var range = document.createRange();
    range.selectNodeContents($(id));
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    try { document.execCommand("copy"); } catch (e) { /* the text stays selected */ }
  }

  var copyButtons = document.querySelectorAll("[data-copy]");
  for (var i = 0; i < copyButtons.length; i++) {
    copyButtons[i].addEventListener("click", function (ev) {
      copy(ev.currentTarget.getAttribute("data-copy"), ev.currentTarget);
    });
  }
  var contactForm = $("contact-form");
  if (contactForm) contactForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var box = $("contact-message");
    fetch(contactForm.getAttribute("action"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ contact: $("contact-input").value }),
      credentials: "same-origin"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (r.ok) {
          payer = Object.assign({}, payer || {}, { contact: body.contact });
          box.textContent = "";
          box.className = "message";
          render();
        } else {
          box.textContent = (body.error && body.error.message) || T("err_generic");
          box.className = "message error";
        }
      });
    }).catch(function () { box.textContent = T("err_generic"); box.className = "message error"; });
  });
  $("pay-balance").addEventListener("click", pay);
  $("tc-pay-ton").addEventListener("click", function () { tcPay("TON"); });
  $("tc-pay-usdt").addEventListener("click", function () { tcPay("USDT"); });
  $("tc-disconnect").addEventListener("click", function () {
    if (tcui) tcui.disconnect().catch(function () { /* already gone */ });
  });
  // These have no server-rendered text: the page's texts fill them.
  ["tonconnect", "usdt"].forEach(function (id) {
    var nodes = $(id).querySelectorAll("[data-t]");
    for (var j = 0; j < nodes.length; j++) nodes[j].textContent = T(nodes[j].getAttribute("data-t"));
  });
  $("pay-ton-toggle").addEventListener("click", function () { tonOpen = true; render(); });
  ["login-link", "claim-link", "bind-link", "tonkeeper-link", "topup-link",
   "usdt-tonkeeper-link"].forEach(function (id) {
    var el = $(id);
    if (el) el.addEventListener("click", function (ev) { openLink(el.href, ev); });
  });

  localTime();
  if (inTelegram()) loadTelegramScript();
  var found = readInitData();
  if (found) startMiniApp(found);
  else { render(); refresh().then(schedulePoll); }  // the first answer brings the tag
})();
