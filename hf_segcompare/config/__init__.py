"""The command line's options: the argument dataclasses and their parser (`arguments`), and the
option names read without importing torch (`option_names`). Nothing is imported here, so
``hf_segcompare.config.option_names`` loads in milliseconds."""
