"""Code every role imports: the manager definition, config, wire records, the client, logging."""
