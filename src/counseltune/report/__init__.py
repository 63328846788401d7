"""Reports: a small document model rendered to Markdown and HTML, with PNG plots."""
