"""What train.py's command line needs beyond LightningCLI: its parser (parser.py: one-line errors, a short --help),
one-line option errors (errors.py) and the checks before a fit resumes from a checkpoint (resume.py). train.py is the
entry point; models/ knows nothing of this package."""
