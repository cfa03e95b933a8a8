"""The command line through its real entry point, on a temporary SQLite database."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from conftest import FIXTURES

CLAIMS = FIXTURES / "worked_example" / "claims.csv"
HEADER = "claim_id,client_prime,provider_id,staff_id,procedure_code,modifier,service_date,start_time,end_time,units,billed_rate\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_worked_example_claim_by_claim(ready):
    """SPEC section 7, asserted on every claim of the exported CSV."""
    batch = ready("submit", CLAIMS).out.strip()
    summary = ready("run").out
    assert "6 claims, 4 paid, 2 suspended, 0 rejected, amount paid 196.44" in summary
    rows = {r["claim_id"]: r for r in ready("outcomes", "--format", "csv").rows()}
    assert list(rows) == ["WX-1", "WX-2", "WX-3", "WX-4", "WX-5", "WX-6"]
    expected = {
        "WX-1": ("paid", "", "", "A", "4", "70.12", "2"),
        "WX-2": ("paid", "", "", "B", "2", "35.06", "3"),
        "WX-3": ("suspended", "OVERLAP_DUPLICATE;OVERLAP_SAME_PROVIDER", "WX-1", "A", "0", "0.00", "4"),
        "WX-4": ("paid", "", "", "C", "2", "56.20", "5"),
        "WX-5": ("suspended", "OVERLAP_SAME_PROVIDER", "WX-4", "D", "0", "0.00", "6"),
        "WX-6": ("paid", "", "", "A", "2", "35.06", "7"),
    }
    for claim_id, (status, reasons, conflicts, spa, units, amount, line) in expected.items():
        row = rows[claim_id]
        assert (row["status"], row["reasons"], row["conflicts_with"], row["spa_id"], row["paid_units"],
                row["paid_amount"], row["line"]) == (status, reasons, conflicts, spa, units, amount, line), claim_id
        assert row["batch_id"] == batch and row["attempt"] == "1"
    assert rows["WX-3"]["carc"] == "B20;18" and rows["WX-5"]["carc"] == "18" and rows["WX-1"]["carc"] == ""


def test_submit_is_idempotent_by_content(ready, tmp_path):
    first = ready("submit", CLAIMS).out.strip()
    copy = shutil.copy(CLAIMS, tmp_path / "renamed.csv")
    assert ready("submit", copy).out.strip() == first
    assert "6 claims" in ready("run").out
    assert ready("submit", CLAIMS).out.strip() == first
    assert "0 claims" in ready("run").out


def test_formats_history_and_filters(ready, tmp_path):
    batch = ready("submit", CLAIMS).out.strip()
    ready("run")
    as_json = json.loads(ready("outcomes", "--format", "json").out)
    assert [r["status"] for r in as_json] == ["paid", "paid", "suspended", "paid", "suspended", "paid"]
    ready("outcomes", "--format", "parquet", "--output", tmp_path / "o.parquet")
    parquet = pl.read_parquet(tmp_path / "o.parquet")
    assert parquet.columns == ["claim_id", "batch_id", "line", "status", "reasons", "spa_id", "paid_units",
                               "paid_amount", "conflicts_with", "carc", "attempt", "adjusts", "reversed_by",
                               "provider_id", "client_prime", "procedure_code", "modifier", "service_date"]
    assert parquet.height == 6
    suspended = ready("outcomes", "--status", "suspended").rows()
    assert [r["claim_id"] for r in suspended] == ["WX-3", "WX-5"]
    assert len(ready("outcomes", "--batch", batch).rows()) == 6
    missing = ready("outcomes", "--batch", "nope", ok=False)
    assert missing.code == 1 and "no batch nope" in missing.err
    ready("outcomes", "--format", "csv", "--output", tmp_path / "o.csv")
    assert (tmp_path / "o.csv").read_text().startswith("claim_id,batch_id,line,status")


def test_requeue_override_and_audit(ready):
    ready("submit", CLAIMS)
    ready("run")
    # Re-queued with nothing changed, WX-3 is judged again and suspends again; history keeps both.
    assert "re-queued 1 claims" in ready("requeue", "--claim", "WX-3", "--operator", "ann", "--note", "recheck").out
    assert "1 claims, 0 paid, 1 suspended" in ready("run").out
    history = [r for r in ready("outcomes", "--history").rows() if r["claim_id"] == "WX-3"]
    assert [(r["attempt"], r["status"]) for r in history] == [("1", "suspended"), ("2", "suspended")]
    # A paid claim cannot be re-queued; nothing is queued by the refusal.
    refused = ready("requeue", "--claim", "WX-1", "--operator", "ann", "--note", "x", ok=False)
    assert refused.code == 1 and "only suspended" in refused.err and "Traceback" not in refused.err
    # Override needs the role: bob, an operator, is refused until an admin grants it.
    assert ready("override", "WX-5", "--waive", "OVERLAP_SAME_PROVIDER", "--operator", "bob", "--note", "ok",
                 ok=False).err == "error: operator bob is not registered (an admin adds it: adjudicate operators add)\n"
    ready("operators", "add", "bob", "--role", "operator", "--operator", "root", "--note", "new clerk")
    denied = ready("override", "WX-5", "--waive", "OVERLAP_SAME_PROVIDER", "--operator", "bob", "--note", "ok",
                   ok=False)
    assert denied.code == 1 and "override role" in denied.err
    ready("operators", "add", "bob", "--role", "override", "--operator", "root", "--note", "override desk")
    not_waivable = ready("override", "WX-5", "--waive", "NO_ACTIVE_SPA", "--operator", "bob", "--note", "ok", ok=False)
    assert not_waivable.code == 1 and "cannot be waived" in not_waivable.err
    ready("override", "WX-5", "--waive", "OVERLAP_SAME_PROVIDER", "--operator", "bob", "--note", "ODDS approved")
    twice = ready("override", "WX-5", "--waive", "OVERLAP_SAME_PROVIDER", "--operator", "bob", "--note", "again",
                  ok=False)
    assert (twice.code, twice.err) == (1, "error: claim WX-5: OVERLAP_SAME_PROVIDER is waived already; the next "
                                          "run decides the claim again\n")
    assert "1 claims, 1 paid" in ready("run").out
    latest = {r["claim_id"]: r for r in ready("outcomes").rows()}
    assert latest["WX-5"]["status"] == "paid" and latest["WX-5"]["attempt"] == "2"
    trail = json.loads(ready("audit", "--format", "json").out)
    actions = [(r["operator"], r["action"]) for r in trail]
    assert ("ann", "requeue") in actions and ("root", "operators.grant") in actions and ("bob", "override") in actions
    assert ("ann", "outcomes.export") in actions
    # A reference load (a data feed, like submit) is recorded as the system's, with the OS user and host.
    load = next(r for r in trail if r["action"] == "reference.load")
    assert load["operator"] == "system" and "spas.csv=" in load["target"] and load["os_user"] and load["host"]
    assert all(r["at"] for r in trail)
    override_row = next(r for r in trail if r["action"] == "override")
    assert override_row["note"] == "ODDS approved" and "WX-5" in override_row["target"]
    assert trail[-1]["action"] == "audit.export"  # an export of the trail is in the trail it exports
    assert len(ready("audit", "--format", "csv").rows()) == len(trail) + 1


def test_a_queued_batch_can_be_withdrawn_before_a_run_reads_it(ready, tmp_path):
    batch = ready("submit", CLAIMS).out.strip()
    stranger = ready("withdraw", batch, "--operator", "eve", "--note", "wrong file", ok=False)
    assert stranger.code == 1 and "not registered" in stranger.err
    assert ready("withdraw", batch, "--operator", "ann", "--note", " ", ok=False).code == 1
    assert "withdrew batch" in ready("withdraw", batch, "--operator", "ann", "--note", "wrong month").out
    assert ready("run").out.startswith("run -: 0 claims")
    assert ready("outcomes").rows() == []
    document = json.loads(ready("ack", batch, "--format", "json").out)
    assert document["status"] == "withdrawn" and "withdrawn" in document["note"]
    trail = json.loads(ready("audit", "--format", "json").out)
    assert [(r["operator"], r["action"], r["note"]) for r in trail if r["action"] == "batch.withdraw"] == [
        ("ann", "batch.withdraw", "wrong month")]
    # The same content again stays withdrawn; a withdrawal is not repeated.
    again = ready("submit", CLAIMS)
    assert again.out.strip() == batch and "withdrawn" in again.err
    assert "is withdrawn" in ready("withdraw", batch, "--operator", "ann", "--note", "x", ok=False).err
    # Its claim ids were never held: a corrected file with the same ids adjudicates as if it were first.
    corrected = write(tmp_path / "corrected.csv", CLAIMS.read_text() + "\n")
    ready("submit", corrected)
    assert "6 claims, 4 paid, 2 suspended, 0 rejected" in ready("run").out
    after = ready("withdraw", ready("submit", corrected).out.strip(), "--operator", "ann", "--note", "x", ok=False)
    assert after.code == 1 and "is adjudicated" in after.err
    assert "no batch" in ready("withdraw", "B0", "--operator", "ann", "--note", "x", ok=False).err


def test_a_run_refuses_a_crowded_client_day_and_the_batch_can_be_withdrawn(ready, tmp_path):
    batch = ready("submit", CLAIMS).out.strip()  # six claims of one client on one day
    crowded = {"ADJUDICATION_RUN_MAX_CLAIMS_PER_CLIENT_DAY": "5"}
    refused = ready("run", ok=False, env=crowded)
    assert refused.code == 1 and batch in refused.err and "nothing was stored" in refused.err
    assert len(refused.err.strip().splitlines()) == 1 and "xyz0000a" not in refused.err  # no client prime
    assert ready("outcomes").rows() == []
    ready("withdraw", batch, "--operator", "ann", "--note", "flooded file")
    assert ready("run", env=crowded).out.startswith("run -: 0 claims")
    ready("submit", write(tmp_path / "again.csv", CLAIMS.read_text() + "\n"))
    assert "4 paid, 2 suspended" in ready("run", env={"ADJUDICATION_RUN_MAX_CLAIMS_PER_CLIENT_DAY": "6"}).out


def test_requeue_selectors(ready, tmp_path):
    ready("submit", CLAIMS)
    ready("run")
    assert "re-queued 0 claims" in ready("requeue", "--provider", "P3", "--operator", "ann", "--note", "n").out
    assert "re-queued 1 claims" in ready("requeue", "--provider", "G1", "--operator", "ann", "--note", "n").out
    assert "re-queued 2 claims" in ready("requeue", "--reason", "OVERLAP_SAME_PROVIDER", "--from", "2026-03-01",
                                         "--to", "2026-03-31", "--operator", "ann", "--note", "n").out
    assert "re-queued 0 claims" in ready("requeue", "--client", "nobody", "--operator", "ann", "--note", "n").out
    assert "2 claims" in ready("run").out
    bare = ready("requeue", "--operator", "ann", "--note", "n", ok=False)
    assert bare.code == 1 and "name the claims" in bare.err
    # A typo in a batch id or a reason code is refused, not taken for a selection of nothing.
    typo = ready("requeue", "--batch", "B-NOPE", "--operator", "ann", "--note", "n", ok=False)
    assert typo.code == 1 and typo.err.strip() == "error: no batch B-NOPE"
    typo = ready("requeue", "--reason", "OVERLAP_SAME_PROVIDR", "--operator", "ann", "--note", "n", ok=False)
    assert typo.code == 1 and "no reason code OVERLAP_SAME_PROVIDR (codes: " in typo.err


def test_requeue_selectors_match_values_as_the_checks_read_them(ready, tmp_path):
    padded = write(tmp_path / "padded.csv", CLAIMS.read_text().replace(",G1,", ", G1\t,").replace(
        ",2026-03-02,", ", 2026-03-02 ,"))
    ready("submit", padded)
    assert "4 paid, 2 suspended" in ready("run").out
    assert "re-queued 1 claims" in ready("requeue", "--provider", "G1", "--operator", "ann", "--note", "n").out
    assert "re-queued 2 claims" in ready("requeue", "--from", "2026-03-02", "--to", "2026-03-02",
                                         "--operator", "ann", "--note", "n").out  # WX-3 and WX-5
    assert "2 claims" in ready("run").out


def test_reference_load_names_the_columns_it_ignores_and_no_value(ready, tmp_path):
    folder = tmp_path / "extra"
    folder.mkdir()
    # A misspelt optional column (start_dat) leaves enrollment open: loaded, but said. A header that
    # may be a value (a client prime number) is named by its position only.
    write(folder / "providers.csv", "provider_id,name,kind,start_dat,abc0001b\nP1,Provider One,psw,2026-06-01,x\n")
    result = ready("reference", "load", folder)
    assert "loaded providers.csv: 1 rows" in result.out
    assert result.err.strip() == ("warning: providers.csv: ignored columns (not in SPEC 2's list for this file): "
                                  "start_dat, (the column at position 5)")
    write(folder / "providers.csv", "\ufeffprovider_id,name,kind,start_date\nP1,Provider One,psw,2026-01-01\n")
    assert ready("reference", "load", folder).err == ""


def test_reference_errors_name_file_line_and_field_and_change_nothing(ready, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    write(bad / "plans.csv", "plan_id,client_prime,start_date,end_date,status,monthly_hours\n"
          "POC9,abc0001b,2026-01-01,2026-06-30,accepted,100\n"
          "POC9B,abc0001b,2026-03-01,2026-02-01,accepted,100\n")
    result = ready("reference", "load", bad, ok=False)
    assert result.code == 1
    assert "plans.csv line 3, field end_date" in result.err and len(result.err.strip().splitlines()) == 1
    write(bad / "plans.csv", "plan_id,client_prime,start_date,end_date,status,monthly_hours\n"
          "POC9,abc0001b,2026-01-01,2026-06-30,accepted,100\n"
          "POC9B,abc0001b,2026-06-01,2026-12-31,accepted,100\n")
    assert "plans.csv line 3, field start_date" in ready("reference", "load", bad, ok=False).err
    write(bad / "plans.csv", "plan_id,client_prime,start_date,end_date,status,monthly_hours\n"
          "POC9,abc0001b,2026-01-01,2026-06-30,accepted,100\n")
    write(bad / "spas.csv", (FIXTURES / "worked_example" / "spas.csv").read_text()
          + "E,POC9,P404,SE49,OR526,NA,2026-01-01,2026-12-31,10,month,17.53,accepted\n")
    assert "spas.csv line 7, field provider_id" in ready("reference", "load", bad, ok=False).err
    write(bad / "spas.csv", "spa_id,plan_id,provider_id,service_element,procedure_code,modifier,start_date,"
          "end_date,units,unit_period,rate,status\nE,POC9,P1,SE49,OR526,NA,2026-01-01,2026-12-31,-1,month,1,accepted\n")
    assert "spas.csv line 2, field units" in ready("reference", "load", bad, ok=False).err
    write(bad / "spas.csv", "spa_id,plan_id,provider_id,service_element,procedure_code,modifier,start_date,"
          "end_date,units,unit_period,rate,status\nE,POC9,P1,SE49,OR526,NA,2026-01-01,2026-12-31,1,week,1,accepted\n")
    assert "spas.csv line 2, field unit_period" in ready("reference", "load", bad, ok=False).err
    write(bad / "spas.csv", "spa_id,plan_id,provider_id,service_element,procedure_code,modifier,start_date,"
          "end_date,units,unit_period,rate,status\nE,POC1,P1,SE49,OR526,NA,2026-06-01,2026-06-30,1,month,1,accepted\n")
    assert "spas.csv line 2, field start_date" in ready("reference", "load", bad, ok=False).err
    # A rate of 100,000 or more is refused (a units x rate product must fit the engine's 64-bit cents),
    # and a message about a value never repeats it (it may be client data).
    for rate, message in (("100000", "must be below 100,000"), ("99999999999999", "must be below 100,000"),
                          ("12ab-secret", "is not a decimal number"), ("1.23456", "has more than 4 decimal places"),
                          ("-100000", "must not be negative"), ("\u0663", "is not a decimal number")):  # an Arabic-Indic 3
        write(bad / "spas.csv", "spa_id,plan_id,provider_id,service_element,procedure_code,modifier,start_date,"
              f"end_date,units,unit_period,rate,status\nE,POC9,P1,SE49,OR526,NA,2026-01-01,2026-06-30,1,month,{rate},"
              "accepted\n")
        refused = ready("reference", "load", bad, ok=False)
        assert refused.err.strip() == f"error: spas.csv line 2, field rate: {message}" and rate not in refused.err
    # Dates are YYYY-MM-DD and amounts plain decimals, as in claim files: not a Unix time, a datetime
    # or an exponent, which a lax parser would take.
    plans = "plan_id,client_prime,start_date,end_date,status,monthly_hours\n"
    for row, message in (("1767225600,2026-06-30,accepted,100", "field start_date: must be a date"),
                         ("2026-01-01,2026-06-30T00:00:00,accepted,100", "field end_date: must be a date"),
                         ("2026-01-01,2026-06-30,accepted,1e2", "field monthly_hours: is not a decimal"),
                         ("2026-01-01,2026-06-30,accepted,+100", "field monthly_hours: is not a decimal")):
        write(bad / "plans.csv", plans + "POC9,abc0001b," + row + "\n")
        assert f"error: plans.csv line 2, {message}" in ready("reference", "load", bad, ok=False).err, row
    # A field over the csv module's size limit is a refusal naming the line, not an internal error.
    (bad / "spas.csv").unlink()
    write(bad / "providers.csv", "provider_id,name,kind\nP1,Pat,psw\nP2," + "x" * 200_000 + ",psw\n")
    huge = ready("reference", "load", bad, ok=False)
    assert huge.code == 1 and "providers.csv line 3, field (record): not readable as CSV" in huge.err
    write(bad / "providers.csv", "provider_id," + "n" * 200_000 + ",kind\nP1,Pat,psw\n")
    assert "providers.csv line 1, field (header): not readable as CSV" in ready("reference", "load", bad, ok=False).err
    # Bytes that are not UTF-8: the line and column they are on (a byte-order mark first is allowed).
    (bad / "providers.csv").write_bytes(b"\xef\xbb\xbfprovider_id,name,kind\nP1,Pat,psw\nP2,Jos\xe9 X,psw\n")
    latin = ready("reference", "load", bad, ok=False)
    assert latin.err.strip() == ("error: providers.csv line 3, field -: not UTF-8: byte 0xE9 at column 7; "
                                 "save the file as UTF-8")
    # None of the refused loads changed anything: the worked example still adjudicates as before.
    ready("submit", CLAIMS)
    assert "4 paid, 2 suspended" in ready("run").out


def test_reference_reload_upserts_and_replaces_enrollments(ready, tmp_path):
    ready("submit", CLAIMS)
    update = tmp_path / "update"
    update.mkdir()
    # The client's CM enrollment now ends before the service date: every claim suspends.
    write(update / "enrollments.csv", "client_prime,cme_id,start_date,end_date\nxyz0000a,CME01,2026-01-01,2026-02-28\n")
    ready("reference", "load", update)
    rows = ready("outcomes").rows()
    assert rows == []
    assert "0 paid, 6 suspended" in ready("run").out
    assert all("NO_CM_ENROLLMENT" in r["reasons"] for r in ready("outcomes").rows())


def test_row_errors_reject_only_their_row(ready, tmp_path):
    claims = write(tmp_path / "mixed.csv", HEADER
                   + "R1,xyz0000a,P1,,OR526,NA,2026-03-02,09:00,13:00,4,\n"
                   + "R2,xyz0000a,P1,,OR526,NA,2026-03-32,09:00,13:00,4,\n"
                   + "R3,xyz0000a,P1,,OR526,NA,2026-03-03,09:00,13:00,3,\n"
                   + "R1,xyz0000a,P1,,OR526,NA,2026-03-04,09:00,13:00,4,\n")
    ready("submit", claims)
    assert "4 claims, 1 paid, 0 suspended, 3 rejected" in ready("run").out
    rows = ready("outcomes").rows()
    assert [(r["claim_id"], r["line"], r["status"], r["reasons"], r["carc"]) for r in rows] == [
        ("R1", "2", "paid", "", ""),
        ("R2", "3", "rejected", "INVALID_RECORD:service_date", "16"),
        ("R3", "4", "rejected", "INVALID_RECORD:units", "16"),
        ("R1", "5", "rejected", "DUPLICATE_CLAIM_ID", "18"),
    ]


def test_errors_are_one_line_with_exit_codes(cli, tmp_path):
    no_schema = cli("run", ok=False)
    assert no_schema.code == 3 and "db upgrade" in no_schema.err and "Traceback" not in no_schema.err
    cli("db", "upgrade")
    cli("db", "upgrade")  # idempotent
    missing = cli("submit", tmp_path / "nope.csv", ok=False)
    assert missing.code == 1 and len(missing.err.strip().splitlines()) == 1
    usage = cli("outcomes", "--format", "xml", ok=False)
    assert usage.code == 2 and "Usage: adjudicate outcomes" in usage.err and "internal" not in usage.err
    assert cli("run").out.startswith("run -: 0 claims")
    for url in ("foo://bar", "not a url:s3cret"):  # the URL is not echoed: it may carry a password
        bad = cli("--db", url, "runs", ok=False)
        assert bad.code == 1 and bad.err.startswith("error: configuration: the database URL is not one")
        assert "s3cret" not in bad.err and "foo" not in bad.err and len(bad.err.strip().splitlines()) == 1
    for sub in ("db upgrade", "reference load", "submit", "run", "outcomes", "requeue", "operators add", "override",
                "audit", "demo", "withdraw"):
        assert "Usage" in cli(*sub.split(), "--help").out


def test_database_url_from_environment(cli, tmp_path):
    db = f"sqlite:///{tmp_path / 'env.db'}"
    from conftest import ADJUDICATE
    import subprocess, os
    done = subprocess.run([str(ADJUDICATE), "db", "upgrade"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "ADJUDICATION_DATABASE_URL": db})
    assert done.returncode == 0 and (tmp_path / "env.db").exists()


def test_default_database_is_a_file_in_the_working_folder(tmp_path):
    from conftest import ADJUDICATE
    import subprocess, os
    env = {k: v for k, v in os.environ.items() if k != "ADJUDICATION_DATABASE_URL"}
    done = subprocess.run([str(ADJUDICATE), "db", "upgrade"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0 and (tmp_path / "adjudication.db").exists()


def test_demo_runs_the_story(cli):
    out = cli("demo").out
    assert "4 paid, 2 suspended, 0 rejected, amount paid 196.44" in out and "same batch" in out and "audit trail" in out
    assert "run 2: 1 paid, 0 suspended, 0 rejected, 1 void, amount paid 112.40, amount reversed 91.26" in out


def test_an_output_file_that_cannot_be_written_is_refused_before_anything_is_audited(ready, tmp_path):
    batch = ready("submit", CLAIMS).out.strip()
    ready("run")

    def actions() -> list[str]:
        return [r["action"] for r in ready("audit", "--format", "csv").rows() if r["action"] != "audit.export"]

    before = actions()
    for command in (("outcomes",), ("ack", batch), ("audit",), ("report", "1", "--format", "json"),
                    ("run", "--dry-run")):
        for target, why in ((tmp_path / "nowhere" / "x.out", f"its folder {tmp_path / 'nowhere'} does not exist"),
                            (tmp_path, "is a folder, not a file")):
            refused = ready(*command, "--output", target, ok=False)
            assert refused.code == 1 and refused.err.strip() == f"error: --output {target}: {why}", command
    assert actions() == before
