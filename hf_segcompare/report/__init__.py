"""What a run leaves for readers: its record (`results.RunResults`), the model card and the
comparison page with their figures (`cards`), and the push to the Hub (`push`). Everything here
reads the record only."""
