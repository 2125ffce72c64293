"""What the application tells about itself: the log file of unexpected failures
(`log_file`) and the versions and devices it runs with (`versions`).

Qt-free, so the command line writes the same log the GUI links from Help.
"""
