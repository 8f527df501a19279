# Sourced by deploy/local/kafka.sh: the SASL_SSL and mutual-TLS listeners of the single
# broker, from the PEM files and user lists in KTRAIL_KAFKA_SECURITY_DIR (see kafka.sh's
# header and docs/kafka.md "A local broker with SASL_SSL and mutual TLS").
# shellcheck shell=bash

security_check() {
  local f p
  [ -d "$SECURITY_DIR" ] || die "KTRAIL_KAFKA_SECURITY_DIR=$SECURITY_DIR is not a directory"
  for f in ca.pem broker.pem broker.key; do
    [ -s "$SECURITY_DIR/$f" ] || die "KTRAIL_KAFKA_SECURITY_DIR: $SECURITY_DIR/$f is missing (PEM)"
  done
  for p in $SASL_SSL_PORT $MTLS_PORT; do
    port_open "$p" && die "port $p is taken by another process; set KTRAIL_KAFKA_SASL_SSL_PORT / KTRAIL_KAFKA_MTLS_PORT"
  done
  return 0
}

# The broker's PEM key store is one file: the private key, then the certificate chain.
security_properties() {
  local d=$SECURITY_DIR jaas=
  cat "$d/broker.key" "$d/broker.pem" >"$d/broker-keystore.pem"
  chmod 600 "$d/broker-keystore.pem"
  if [ -f "$d/plain-users" ]; then
    jaas=$(awk 'NF == 2 { printf " user_%s=\"%s\"", $1, $2 }' "$d/plain-users")
  fi
  cat <<EOF
# --- authentication and TLS from $d ---
ssl.keystore.type=PEM
ssl.keystore.location=$d/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$d/ca.pem
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$jaas;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.ssl.ssl.client.auth=required
EOF
}

# kafka-storage format --add-scram 'SCRAM-SHA-256=[name=alice,password=...]', one per user.
scram_args() {
  awk 'NF == 3 { printf "--add-scram\n%s=[name=%s,password=%s]\n", $1, $2, $3 }' "$SECURITY_DIR/scram-users"
}
