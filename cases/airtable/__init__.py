"""The Airtable export of sent-mail recipient statistics (issue 15).

Why in `cases`: each row joins mailsync's statistics for a recipient with the customer whose
address it is and that customer's organization, and `mailsync` knows nothing of customers.

- `models`: export configurations with their column mapping, what was last exported per
  record (a hash of its mapped values), and the record of each run.
- `client`: pyairtable with our retry policy, the per-base rate limit (`limits`) and typed
  errors.
- `services`: a run (changed records only, in upserts of ten, resumable), the schedule kept in
  django-celery-beat, the connection test.
"""
