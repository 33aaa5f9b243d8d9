"""One module per stage; ``scanner.pipeline`` lists them in order."""
