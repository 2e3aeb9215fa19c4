"""English schedules make the cron Komodo runs: the english-to-cron crate's own test table
(tests/test.rs of the crate, version 0.1.x; Komodo keeps the first six fields, in
bin/core/src/schedule.rs ``find_next_occurrence``), the forms in Komodo's docs
(docsite/docs/automate/schedules.md) and in the corpus. Sentences where the crate silently drops
words that mean something are refused, saying which."""

from __future__ import annotations

import pytest

from core.automation.english import EnglishError, to_cron

CRATE_TABLE = [
    ("Run second", "* * * * * ?"),
    ("every 5 second", "0/5 * * * * ?"),
    ("every 5 second on september", "0/5 * * * SEP ?"),
    ("Every 2 seconds, only on thursday", "0/2 * * ? * THU"),
    ("Run every 2 second on Monday thursday", "0/2 * * ? * MON,THU"),
    (
        "Run every 10 seconds Monday through thursday between 6:00 am and 8:00 pm",
        "0/10 * 6-20 ? * MON-THU",
    ),
    ("Run every minute", "0 * * * * ?"),
    ("Run every 15 minutes", "0 0/15 * * * ?"),
    ("every minutes on thursday", "0 * * ? * THU"),
    ("every 2 minutes on Thursday", "0 0/2 * ? * THU"),
    ("Run every 10 minutes Monday through Friday every month", "0 0/10 * ? * MON-FRI"),
    (
        "Run every 1 minutes Monday through Thursday between 6:00 am and 9:00 pm",
        "0 0/1 6-21 ? * MON-THU",
    ),
    (
        "Run every 5 minutes Monday through Thursday between 6:00 am and 9:00 am",
        "0 0/5 6-9 ? * MON-THU",
    ),
    ("Every 5 minutes, only on Friday", "0 0/5 * ? * FRI"),
    ("Run every 3 hours", "0 0 0/3 * * ?"),
    ("Run every 1 hour only on weekends", "0 0 0/1 ? * SAT,SUN"),
    ("Run every hour only on weekends", "0 0 * ? * SAT,SUN"),
    ("2pm on Tuesday, Wednesday and Thursday", "0 0 14 ? * TUE,WED,THU"),
    ("Run every day", "0 0 0 */1 * ?"),
    ("Run every 4 days", "0 0 0 */4 * ?"),
    ("every day at 4:00 pm", "0 0 16 */1 * ?"),
    ("every 2 day at 4:00 pm", "0 0 16 */2 * ?"),
    ("every 5 day at 4:30 pm", "0 30 16 */5 * ?"),
    ("every 5 day at 4:30 pm only in September", "0 30 16 */5 SEP ?"),
    ("every 5 day at 4:30 pm Monday through Thursday", "0 30 16 ? * MON-THU"),
    ("Run every day from January to March", "0 0 0 */1 JAN-MAR ?"),
    ("Run every 3 days at noon", "0 0 12 */3 * ?"),
    ("Run every 2nd day of the month", "0 0 0 2 * ?"),
    ("Run every sec from January to March", "* * * * JAN-MAR ?"),
    ("Run every minute from January to March", "0 * * * JAN-MAR ?"),
    ("Run every hours from January to March", "0 0 * * JAN-MAR ?"),
    ("Run at 10:00 am", "0 0 10 * * ?"),
    ("Run at 12:15 pm", "0 15 12 * * ?"),
    ("Run at 6:00 pm every Monday through Friday", "0 0 18 ? * MON-FRI"),
    ("Run at noon every Sunday", "0 0 12 ? * SUN"),
    ("Run at midnight on the 1st and 15th of the month", "0 0 0 1,15 * ?"),
    ("midnight on Tuesdays", "0 0 0 ? * TUE"),
    ("Run at 5:15am every Tuesday", "0 15 5 ? * TUE"),
    ("7pm every Thursday", "0 0 19 ? * THU"),
    ("2pm and 6pm", "0 0 14,18 * * ?"),
    ("5am, 10am and 3pm", "0 0 5,10,15 * * ?"),
    ("Run every hour only on Monday", "0 0 * ? * MON"),
    ("Run every 30 seconds only on weekends", "0/30 * * ? * SAT,SUN"),
    ("4pm, 5pm and 7pm", "0 0 16,17,19 * * ?"),
    ("4pm, 5pm, and 7pm", "0 0 16,17,19 * * ?"),
    ("4pm, 5pm, 7pm", "0 0 16,17,19 * * ?"),
    ("4pm and 5pm and 7pm", "0 0 16,17,19 * * ?"),
    ("on Sunday at 12:00", "0 0 12 ? * SUN"),  # the crate's README
]

KOMODO_AND_CORPUS = [
    ("Every day at 01:00", "0 0 1 */1 * ?"),  # hec7orci7o, Komodo's default backup procedure
    ("Every day at 03:00", "0 0 3 */1 * ?"),  # jamesfpate
    ("every 15 minutes", "0 0/15 * * * ?"),  # Maaskk
    ("at 09:00 am", "0 0 9 * * ?"),  # BrockCSC
    ("at 03:00 every Sunday", "0 0 3 ? * SUN"),  # Maaskk
    ("Every 5 minutes", "0 0/5 * * * ?"),  # Komodo's schedules.md
    ("Every Monday at 09:00", "0 0 9 ? * MON"),
]


@pytest.mark.parametrize(("sentence", "cron"), CRATE_TABLE + KOMODO_AND_CORPUS)
def test_the_cron_komodo_runs(sentence: str, cron: str) -> None:
    assert to_cron(sentence) == cron


@pytest.mark.parametrize(
    ("sentence", "needle"),
    [
        ("0 0 3 * * *", 'set schedule_format = "Cron"'),  # the crate: every minute
        ("every 2 day from January to August in 2020 and 2024", "no year field"),
        ("Run every 6 hours, starting at 1:00 pm on day Monday", "'starting' is ignored"),
        ("on Monday", "without a time or a frequency"),
        ("every fortnight", "'fortnight' is not understood"),
        ("at 25:00", "not an hour of the day"),
        ("at 13pm", "12-hour clock"),
        ("at 9:15 and 10:30", "different minutes"),
        ("", "empty"),
    ],
)
def test_what_komodos_reader_would_get_wrong_is_refused(sentence: str, needle: str) -> None:
    with pytest.raises(EnglishError, match=needle):
        to_cron(sentence)
