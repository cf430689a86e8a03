"""The protocol endpoints: what clients, browsers and resource servers send, per the RFCs."""
