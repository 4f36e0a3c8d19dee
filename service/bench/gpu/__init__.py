"""`vdvae bench gpu`: everything the project measures on a CUDA device, in one command and one output
folder (command.py), one module per stage; `--dry-run` runs every stage on the CPU at tiny sizes."""
