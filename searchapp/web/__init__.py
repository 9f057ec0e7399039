"""`searchapp serve`: a JSON API and a web page over one library. Routes call the Library facade
only; no SQL, no FAISS here."""
