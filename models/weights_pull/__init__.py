"""Getting published weights onto disk: the catalogue (data in models/catalogue.yaml), checked downloads from the
Hugging Face Hub, plain HTTPS and Google Drive, atomic installs and the registry they write. Never imports torch."""
