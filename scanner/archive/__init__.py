"""Strict readers of the archive formats intake accepts: one archive, one meaning.

Each reader parses the container itself and refuses anything that another common
extractor (Python's zipfile/tarfile, Info-ZIP unzip, libarchive's bsdtar, a streaming
reader that follows the local headers) could read as a different tree.
"""
