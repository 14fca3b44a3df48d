"""The daily pages: the backup health dashboard (also the admin home's first panel) and
the customer page with its timeline, and their CSV exports.

They live in the project package because they compose every app (backups, alerts,
integrations, customers) while the apps depend on each other one way only; one module
per page, composition only (what the admin already does — lists, filters, paging,
actions — is the admin's: the account-link review is backups' AccountLinkAdmin). Every
page is a fixed number of queries, whatever the number of rows.
"""
