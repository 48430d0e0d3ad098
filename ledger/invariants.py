"""The ledger's invariants, checked against the database (`paybot admin check`, tests)."""

from __future__ import annotations

from ledger.db import Executor, fetch_all

# name -> query returning one row per violation, with a `detail` column.
CHECKS: dict[str, str] = {
    "entries_sum_to_zero_per_currency": """
        SELECT currency || ' sums to ' || sum(amount) AS detail
          FROM entries GROUP BY currency HAVING sum(amount) <> 0""",
    "each_transaction_balanced": """
        SELECT 'ledger transaction ' || tx_id || ' ' || currency || ' off by ' || sum(amount)
               AS detail
          FROM entries GROUP BY tx_id, currency HAVING sum(amount) <> 0""",
    "entries_point_at_accounts_of_their_currency": """
        SELECT 'entry ' || e.id || ' -> account ' || e.account_id AS detail
          FROM entries e LEFT JOIN accounts a ON a.id = e.account_id
         WHERE a.id IS NULL OR a.currency <> e.currency""",
    "references_exist": """
        SELECT 'entry ' || e.id || ' -> missing ledger transaction ' || e.tx_id AS detail
          FROM entries e LEFT JOIN ledger_transactions t ON t.id = e.tx_id WHERE t.id IS NULL
        UNION ALL
        SELECT 'payment ' || p.id || ' -> missing invoice, payer or ledger transaction'
          FROM payments p
          LEFT JOIN invoices i ON i.id = p.invoice_id
          LEFT JOIN ledger_transactions t ON t.id = p.ledger_tx_id
          LEFT JOIN users u ON u.id = p.payer_id
         WHERE i.id IS NULL OR t.id IS NULL OR (p.payer_id IS NOT NULL AND u.id IS NULL)
        UNION ALL
        SELECT 'grant ' || g.id || ' -> missing payment or user'
          FROM grants g
          LEFT JOIN payments p ON p.id = g.payment_id
          LEFT JOIN users u ON u.id = g.user_id
         WHERE (g.payment_id IS NOT NULL AND p.id IS NULL)
            OR (g.user_id IS NOT NULL AND u.id IS NULL)""",
    "ton_transfer_references_exist": """
        SELECT 'ton transfer ' || t.tx_hash || ' -> missing invoice, user, payment or ledger '
               || 'transaction' AS detail
          FROM ton_transfers t
          LEFT JOIN invoices i ON i.id = t.invoice_id
          LEFT JOIN users u ON u.id = t.user_id
          LEFT JOIN payments p ON p.id = t.payment_id
          LEFT JOIN ledger_transactions l ON l.id = t.ledger_tx_id
         WHERE (t.invoice_id IS NOT NULL AND i.id IS NULL)
            OR (t.user_id IS NOT NULL AND u.id IS NULL)
            OR (t.payment_id IS NOT NULL AND p.id IS NULL)
            OR (t.ledger_tx_id IS NOT NULL AND l.id IS NULL)""",
    "balance_equals_applied_entries": """
        SELECT 'account ' || a.id || ' balance ' || a.balance || ' but entries say '
               || coalesce(s.applied, 0) AS detail
          FROM accounts a
          LEFT JOIN (SELECT account_id, sum(amount) AS applied FROM entries
                      WHERE balance_after IS NOT NULL GROUP BY account_id) s
                 ON s.account_id = a.id
         WHERE a.balance <> coalesce(s.applied, 0)""",
    "no_user_balance_below_zero": """
        SELECT 'account ' || a.id || ' of user ' || a.user_id || ' at ' || a.balance AS detail
          FROM accounts a WHERE a.user_id IS NOT NULL AND a.balance < 0""",
    # One-time invoices may be paid in parts (manual payments, then the rest by any method);
    # a multi-use invoice takes whole payments, one per use.
    "one_time_amount_paid_matches_payments": """
        SELECT 'invoice ' || i.public_id || ' amount_paid ' || i.amount_paid || ' but payments '
               || coalesce(s.paid, 0) AS detail
          FROM invoices i
          LEFT JOIN (SELECT p.invoice_id, sum(p.amount) AS paid FROM payments p
                      WHERE NOT EXISTS (SELECT 1 FROM payment_reversals r
                                         WHERE r.payment_id = p.id)
                      GROUP BY p.invoice_id) s ON s.invoice_id = i.id
         WHERE i.kind = 'one_time' AND i.amount_paid <> coalesce(s.paid, 0)""",
    "one_time_invoice_used_once_when_fully_paid": """
        SELECT 'invoice ' || i.public_id || ' uses ' || i.uses || ', paid ' || i.amount_paid
               || ' of ' || i.amount || ', status ' || i.status AS detail
          FROM invoices i
         WHERE i.kind = 'one_time'
           AND ((i.uses = 1) <> (i.amount_paid = i.amount) OR i.uses > 1
                OR (i.status = 'paid') AND i.uses <> 1)""",
    "fully_paid_one_time_invoice_has_a_grant": """
        SELECT 'invoice ' || i.public_id || ' has no grant' AS detail
          FROM invoices i
         WHERE i.kind = 'one_time' AND i.uses = 1
           AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.invoice_id = i.id)""",
    # (a refunded payment gives its use back: reversed payments do not count)
    "multi_use_uses_match_payments": """
        SELECT 'invoice ' || i.public_id || ' uses ' || i.uses || ' but ' || n.live
               || ' payments' AS detail
          FROM invoices i
          CROSS JOIN LATERAL (SELECT count(*) AS live FROM payments p
                               WHERE p.invoice_id = i.id AND NOT EXISTS (
                                   SELECT 1 FROM payment_reversals r
                                    WHERE r.payment_id = p.id)) n
         WHERE i.kind = 'multi_use' AND i.uses <> n.live""",
    "every_whole_payment_has_a_grant": """
        SELECT 'payment ' || p.id || ' has no grant' AS detail
          FROM payments p JOIN invoices i ON i.id = p.invoice_id
          LEFT JOIN grants g ON g.payment_id = p.id
         WHERE g.id IS NULL AND (i.kind = 'multi_use' OR p.method <> 'manual')""",
    # Cards and Stars (ledger/rails.py): a settled one is an ordinary payment of its rail.
    "rail_payment_is_a_payment_of_its_rail": """
        SELECT 'rail payment ' || r.id || ' -> payment ' || coalesce(p.method, 'none')
               AS detail
          FROM rail_payments r LEFT JOIN payments p ON p.id = r.payment_id
         WHERE r.outcome = 'paid' AND (p.id IS NULL OR p.method <> r.rail
                                       OR p.amount <> r.ledger_amount)""",
    # Money in suspense, per currency, is exactly what is held: the chain's open holdings (TON
    # and jettons, ton_holds) and the card/Stars payments held that no refund took out yet.
    "suspense_is_what_is_held": """
        SELECT c.code || ' suspense ' || coalesce(a.total, 0) || ' but held '
               || coalesce(h.total, 0) + coalesce(t.total, 0) AS detail
          FROM currencies c
          LEFT JOIN (SELECT x.currency, sum(e.amount) AS total FROM accounts x
                       JOIN entries e ON e.account_id = x.id
                      WHERE x.system_name = 'suspense' GROUP BY x.currency) a
                 ON a.currency = c.code
          LEFT JOIN (SELECT r.currency, sum(r.amount) AS total FROM rail_payments r
                      WHERE r.outcome = 'held' AND NOT EXISTS (
                          SELECT 1 FROM rail_refunds f WHERE f.rail_payment_id = r.id
                             AND f.status IN ('pending', 'done'))
                      GROUP BY r.currency) h ON h.currency = c.code
          LEFT JOIN (SELECT x.asset, sum(x.amount_nano) AS total FROM ton_holds x
                      WHERE x.released_at IS NULL GROUP BY x.asset) t ON t.asset = c.code
         WHERE coalesce(a.total, 0) <> coalesce(h.total, 0) + coalesce(t.total, 0)""",
    "payment_matches_its_invoice": """
        SELECT 'payment ' || p.id || ' of ' || p.amount || ' ' || p.currency
               || ' for invoice ' || i.public_id AS detail
          FROM payments p JOIN invoices i ON i.id = p.invoice_id
         WHERE p.currency <> i.currency
            OR (i.kind = 'multi_use' AND p.amount <> i.amount)
            OR (i.kind = 'one_time' AND p.amount > i.amount)""",
    # The dashboard's rollups (ledger/sql/reports.sql) are what they sum up: drift would show a
    # seller wrong figures without any money being wrong.
    "revenue_rollup_is_payments_less_reversals": """
        SELECT 'revenue of seller ' || coalesce(t.seller_id, r.seller_id) || ' on '
               || coalesce(t.day, r.day) || ' ' || coalesce(t.method, r.method) || ' is '
               || coalesce(r.amount, 0) || ', payments say ' || coalesce(t.amount, 0) AS detail
          FROM (SELECT i.seller_id, (p.created_at AT TIME ZONE 'UTC')::date AS day, p.currency,
                       p.method, sum(p.amount) AS amount, count(*) AS payments
                  FROM payments p JOIN invoices i ON i.id = p.invoice_id
                 WHERE NOT EXISTS (SELECT 1 FROM payment_reversals v WHERE v.payment_id = p.id)
                 GROUP BY 1, 2, 3, 4) t
          FULL JOIN (SELECT * FROM revenue_daily WHERE payments <> 0 OR amount <> 0) r
            USING (seller_id, day, currency, method)
         WHERE t.amount IS DISTINCT FROM r.amount OR t.payments IS DISTINCT FROM r.payments""",
    "item_rollup_is_payments_less_reversals": """
        SELECT 'item ' || quote_literal(coalesce(t.item, r.item)) || ' of seller '
               || coalesce(t.seller_id, r.seller_id) || ' in ' || coalesce(t.month, r.month)
               || ' is ' || coalesce(r.amount, 0) || ', payments say ' || coalesce(t.amount, 0)
               AS detail
          FROM (SELECT i.seller_id, date_trunc('month', p.created_at AT TIME ZONE 'UTC')::date
                           AS month, p.currency, i.title AS item, sum(p.amount) AS amount,
                       count(*) AS payments
                  FROM payments p JOIN invoices i ON i.id = p.invoice_id
                 WHERE NOT EXISTS (SELECT 1 FROM payment_reversals v WHERE v.payment_id = p.id)
                 GROUP BY 1, 2, 3, 4) t
          FULL JOIN (SELECT * FROM item_revenue_monthly WHERE payments <> 0 OR amount <> 0) r
            USING (seller_id, month, currency, item)
         WHERE t.amount IS DISTINCT FROM r.amount OR t.payments IS DISTINCT FROM r.payments""",
    "conversion_rollup_is_the_invoices": """
        SELECT 'invoices of seller ' || coalesce(t.seller_id, r.seller_id) || ' issued on '
               || coalesce(t.day, r.day) || ': rollup ' || coalesce(r.issued, 0) || '/'
               || coalesce(r.paid, 0) || ', invoices ' || coalesce(t.issued, 0) || '/'
               || coalesce(t.paid, 0) AS detail
          FROM (SELECT seller_id, (issued_at AT TIME ZONE 'UTC')::date AS day, count(*) AS issued,
                       count(*) FILTER (WHERE status = 'paid') AS paid
                  FROM invoices WHERE issued_at IS NOT NULL GROUP BY 1, 2) t
          FULL JOIN (SELECT * FROM invoices_daily WHERE issued <> 0 OR paid <> 0) r
            USING (seller_id, day)
         WHERE t.issued IS DISTINCT FROM r.issued OR t.paid IS DISTINCT FROM r.paid""",
}


async def check_invariants(db: Executor) -> list[str]:
    """Every violation as 'name: detail'; an empty list means the ledger is sound."""
    violations: list[str] = []
    for name, sql in CHECKS.items():
        for row in await fetch_all(db, sql):
            violations.append(f"{name}: {row['detail']}")
    return violations
