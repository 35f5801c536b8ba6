-- wrk script: client-credentials token issuance (client "bench", secret "secret", bench/bearer.toml)
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic YmVuY2g6c2VjcmV0"
