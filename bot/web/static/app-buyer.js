/* The buyer's tab of the Mini App (/app): what was sent to me and is still to pay (each with a
 * Pay button that opens the pay page here, in the Mini App), my balance, my subscriptions, what
 * I bought, and my history — what I paid for, to whom and how, with the receipt — a page at a
 * time ("Show more").
 *
 * Data from /app/api/buyer/* (bot/web/app/buyer.py), text only (app.el), never HTML.
 */
(function () {
  "use strict";

  // Texts named at run time: each is listed in buyer.py's DYNAMIC, so extraction keeps it.
  function statusKey(status) { return "app_buyer_status_" + status; }
  function stateKey(state) { return "app_buyer_" + state; }
  if (!window.PaybotApp) return;

  function date(app, iso) {
    if (!iso) return "";
    var d = new Date(iso);
    try {
      return d.toLocaleDateString(app.lang === "ru" ? "ru-RU" : "en-GB",
        { day: "numeric", month: "short", year: "numeric" });
    } catch (e) {
      return iso.slice(0, 10);
    }
  }
  // A line of small facts ("from @shop · No. INV-2026-0001 · card"); each fact stays whole.
  function facts(app, parts) {
    var out = [];
    parts.filter(function (p) { return p; }).forEach(function (p, i) {
      if (i) out.push(" · ");
      out.push(app.el("span", { class: "buyer-fact", text: p }));
    });
    return app.el("div", { class: "buyer-sub" }, out);
  }
  function number(app, n) { return n ? app.t("app_buyer_number", { number: n }) : ""; }
  function from(app, who) { return who ? app.t("app_buyer_from", { seller: who }) : ""; }
  function card(app, id, title, children) {
    return app.el("section", { class: "card buyer-card", id: id },
      [app.el("h2", { text: title })].concat(children));
  }
  function empty(app, text) {
    return app.el("p", { class: "empty", text: text });
  }
  // The pay page and the plan page are ours: open them in this webview (the Mini App's
  // sign-in carries over), not in an outside browser.
  function go(path) { window.location.assign(path); }

  function row(app, cls, main, side) {
    return app.el("li", { class: "buyer-row " + cls }, [
      app.el("div", { class: "main" }, main),
      app.el("div", { class: "side" }, side),
    ]);
  }

  function toPay(app, items) {
    if (!items.length) return card(app, "buyer-to-pay", app.t("app_buyer_to_pay"), [empty(app, app.t("app_buyer_to_pay_empty"))]);
    return card(app, "buyer-to-pay", app.t("app_buyer_to_pay"), [app.el("ul", { class: "list" }, items.map(function (x) {
      var when = x.due_at ? app.t("app_buyer_due", { date: date(app, x.due_at) })
        : app.t("app_buyer_valid_until", { date: date(app, x.expires_at) });
      return row(app, "to-pay", [
        app.el("div", { class: "title", text: x.title }),
        facts(app, [from(app, x.seller), number(app, x.number)]),
        app.el("div", { class: "buyer-sub" }, [
          x.overdue ? app.el("span", { class: "badge overdue", text: app.t("app_buyer_overdue") }) : null,
          x.overdue ? " " : null, when]),
      ], [
        app.el("div", { class: "amount", text: x.due.display }),
        app.el("button", { type: "button", class: "btn small buyer-pay", text: app.t("app_buyer_pay"),
          "data-invoice": x.id, onclick: function () { go(x.pay); } }),
      ]);
    }))]);
  }

  function balances(app, list) {
    if (!list.length) return null;
    return app.el("div", { class: "figures buyer-balances" }, list.map(function (b) {
      return app.el("div", { class: "figure" }, [
        app.el("div", { class: "label", text: app.t("app_buyer_balance") }),
        app.el("div", { class: "value", text: b.display }),
      ]);
    }));
  }

  function nextText(app, s) {
    var n = s.next || {};
    if (n.kind === "to_pay") return app.t("app_buyer_sub_to_pay");
    var key = "app_buyer_sub_" + n.kind; // each listed in buyer.py's DYNAMIC for extraction
    return app.t(key, { date: date(app, n.at) });
  }
  function subscriptions(app, list) {
    var title = app.t("app_buyer_subscriptions");
    if (!list.length) return card(app, "buyer-subscriptions", title, [empty(app, app.t("app_buyer_subscriptions_empty"))]);
    return card(app, "buyer-subscriptions", title, [app.el("ul", { class: "list" }, list.map(function (s) {
      var tone = { active: "ok", trialing: "ok", past_due: "overdue", incomplete: "pending" }[s.status] || "";
      return row(app, "subscription", [
        app.el("div", { class: "title" }, [s.plan_name, " ",
          app.el("span", { class: "badge " + tone, text: app.t(statusKey(s.status)) })]),
        facts(app, [from(app, s.seller),
          s.per_period]),
        app.el("div", { class: "buyer-sub", text: nextText(app, s) }),
      ], [
        app.el("button", { type: "button", class: "btn small secondary", text: app.t("app_buyer_open_plan"),
          onclick: function () { go(s.page); } }),
      ]);
    }))]);
  }

  function purchases(app, list) {
    var title = app.t("app_buyer_purchases");
    if (!list.length) return card(app, "buyer-purchases", title, [empty(app, app.t("app_buyer_purchases_empty"))]);
    return card(app, "buyer-purchases", title, [app.el("ul", { class: "list" }, list.map(function (p) {
      return row(app, "purchase", [
        app.el("div", { class: "title", text: p.title || p.item || "—" }),
        facts(app, [p.item && p.item !== p.title ? p.item : "", from(app, p.seller),
          number(app, p.number)]),
      ], [
        p.amount ? app.el("div", { class: "amount", text: p.amount.display }) : null,
        app.el("div", { class: "hint", text: date(app, p.at) }),
      ]);
    }))]);
  }

  function historyLine(app, x) {
    var sign = x.direction === "in" ? "+" : "\u2212";
    var state = x.state ? app.el("span", { class: "badge " + (x.state === "refund_pending" ? "pending" : "bad"),
      text: app.t(stateKey(x.state)) }) : null;
    var main = [
      app.el("div", { class: "title", text: x.title }),
      facts(app, [from(app, x.seller), number(app, x.number), x.method_text || ""]),
      app.el("div", { class: "buyer-sub" }, [date(app, x.at), state ? " " : null, state]),
    ];
    var side = [app.el("div", { class: "amount" + (x.state === "reversed" || x.state === "refunded" ? " buyer-struck" : ""),
      text: sign + x.amount.display })];
    if (x.receipt) {
      side.push(app.el("button", { type: "button", class: "btn small secondary buyer-receipt",
        text: app.t("app_buyer_receipt"),
        onclick: function () { app.download(x.receipt, (x.number || x.invoice) + ".pdf"); } }));
    }
    return row(app, "history " + x.kind, main, side);
  }

  function history(app, page) {
    var title = app.t("app_buyer_history");
    if (!page.lines.length) return card(app, "buyer-history", title, [empty(app, app.t("app_buyer_history_empty"))]);
    var list = app.el("ul", { class: "list", id: "buyer-history-list" }, page.lines.map(function (x) {
      return historyLine(app, x);
    }));
    var more = app.el("button", { type: "button", class: "btn secondary buyer-more", id: "buyer-more",
      text: app.t("app_buyer_more"), hidden: !page.next_cursor });
    var cursor = page.next_cursor;
    more.addEventListener("click", function () {
      more.disabled = true;
      app.api("/app/api/buyer/history", { query: { cursor: cursor } }).then(function (next) {
        next.lines.forEach(function (x) { list.appendChild(historyLine(app, x)); });
        cursor = next.next_cursor;
        more.disabled = false;
        more.hidden = !cursor;
      }, function (err) { more.disabled = false; app.failed(err); });
    });
    return card(app, "buyer-history", title, [list, more]);
  }

  window.PaybotApp.register("buyer", {
    render: function (el, app) {
      el.appendChild(app.el("p", { class: "hint", text: app.t("app_loading") }));
      app.api("/app/api/buyer/overview").then(function (data) {
        if (!el.isConnected) return;  // the tab was left or redrawn meanwhile
        el.textContent = "";
        if (!data.known) el.appendChild(app.el("p", { class: "hint buyer-unknown", text: app.t("app_buyer_unknown") }));
        [toPay(app, data.to_pay), balances(app, data.balances), subscriptions(app, data.subscriptions),
          purchases(app, data.purchases), history(app, data.history)].forEach(function (node) {
          if (node) el.appendChild(node);
        });
      }, function (err) {
        if (!el.isConnected) return;
        el.textContent = "";
        app.failed(err);
      });
    },
  });
})();
