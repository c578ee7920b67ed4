"""The API's routers: ``session`` (log-in, who am I, templates, accounts, audit), ``studies`` (upload,
worklist, images, drafts, questions) and ``report`` (save, sign, history, exports)."""
