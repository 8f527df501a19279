{{/* The prefix of every name: the release name when it says ktrail, else <release>-ktrail. */}}
{{- define "ktrail.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of one component (collector, processor) or of the whole (no component). */}}
{{- define "ktrail.labels" -}}
{{ with .component }}app.kubernetes.io/name: {{ include "ktrail.fullname" $.root }}-{{ . }}
{{ end -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: ktrail
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end -}}

{{- define "ktrail.selector" -}}
app.kubernetes.io/name: {{ include "ktrail.fullname" .root }}-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "ktrail.image" -}}
{{- $image := index .root.Values.image .component -}}
{{ $image.repository }}:{{ $image.tag | default .root.Chart.AppVersion }}
{{- end -}}

{{/* The Secret mounts both workloads share: the Kafka Secret at /etc/ktrail/kafka. */}}
{{- define "ktrail.kafkaMountPath" -}}/etc/ktrail/kafka{{- end -}}
{{- define "ktrail.clickhouseMountPath" -}}/etc/ktrail/clickhouse{{- end -}}

{{/* ktrail.yaml: the endpoints from the values, secrets as paths into the mounted Secrets. */}}
{{- define "ktrail.config" -}}
{{- $k := .Values.kafka -}}
{{- $c := .Values.clickhouse -}}
{{- $kafka := dict "brokers" $k.brokers "partitions" $k.partitions "replicationFactor" $k.replicationFactor -}}
{{- if $k.tls.enabled -}}
{{- $tls := dict "caFile" (printf "%s/ca.pem" (include "ktrail.kafkaMountPath" .)) -}}
{{- if $k.tls.clientCertificate -}}
{{- $_ := set $tls "certFile" (printf "%s/tls.crt" (include "ktrail.kafkaMountPath" .)) -}}
{{- $_ := set $tls "keyFile" (printf "%s/tls.key" (include "ktrail.kafkaMountPath" .)) -}}
{{- end -}}
{{- $_ := set $kafka "tls" $tls -}}
{{- end -}}
{{- if $k.sasl.mechanism -}}
{{- $_ := set $kafka "sasl" (dict "mechanism" $k.sasl.mechanism "username" $k.sasl.username "passwordFile" (printf "%s/password" (include "ktrail.kafkaMountPath" .))) -}}
{{- end -}}
{{- $clickhouse := dict "url" $c.url "database" $c.database "username" $c.username "passwordFile" (printf "%s/password" (include "ktrail.clickhouseMountPath" .)) "ttlRawDays" $c.ttlRawDays "ttlRollupDays" $c.ttlRollupDays -}}
{{- if $c.tls.enabled -}}
{{- $_ := set $clickhouse "tls" (dict "caFile" (printf "%s/ca.pem" (include "ktrail.clickhouseMountPath" .))) -}}
{{- end -}}
{{- $config := mergeOverwrite (dict "kafka" $kafka "clickhouse" $clickhouse) (deepCopy .Values.config) -}}
{{- include "ktrail.refuseSecrets" (dict "value" .Values.config "path" "config") -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Fails the render when `config` holds a value under a key that names a secret. */}}
{{- define "ktrail.refuseSecrets" -}}
{{- range $key, $value := .value -}}
{{- $path := printf "%s.%s" $.path $key -}}
{{- if kindIs "map" $value -}}
{{- include "ktrail.refuseSecrets" (dict "value" $value "path" $path) -}}
{{- else if and (regexMatch "(?i)(pass(word)?|secret|token|credential)$" $key) (not (hasSuffix "File" $key)) -}}
{{- fail (printf "%s: secrets come from existing Secrets (kafka.existingSecret, clickhouse.existingSecret), not values" $path) -}}
{{- end -}}
{{- end -}}
{{- end -}}
