"""Read models: querysets and views over the stored records, for the API, the console and the pages."""
