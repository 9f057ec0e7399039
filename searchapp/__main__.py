from searchapp.cli import run

run()
