-- Raising the ledger's typed errors. The code -> SQLSTATE table is ledger/errors.py (ERRORS):
-- paybot_error_sqlstate(code) is generated from it each time the files are applied
-- (ledger/sql/__init__.py), so SQL names an error by its code only and a new error is one
-- class in Python. The detail is the error's detail; a JSON object becomes its fields.

CREATE OR REPLACE FUNCTION paybot_raise(p_code text, p_detail text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', p_code
        USING DETAIL = coalesce(p_detail, ''), ERRCODE = paybot_error_sqlstate(p_code);
END $$;
