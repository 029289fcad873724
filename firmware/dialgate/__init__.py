"""dialgate: a store-and-forward SMTP/POP3 gateway for offices on a dial-up link."""
