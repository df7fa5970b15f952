{{/*
The four services, in one order everywhere.
*/}}
{{- define "postsale.serviceNames" -}}
checkout entitlements accounts notifications
{{- end }}

{{/*
Secret keys each service cannot start without (its settings' secret fields and its database),
without the service's prefix.
*/}}
{{- define "postsale.requiredSecrets" -}}
{{- $required := dict
      "checkout" (list "DATABASE_URL" "ADMIN_TOKEN" "SECRET_KEY")
      "entitlements" (list "DATABASE_URL" "ADMIN_TOKEN")
      "accounts" (list "DATABASE_URL" "ADMIN_TOKEN" "SESSION_SIGNING_KEY")
      "notifications" (list "DATABASE_URL" "ADMIN_TOKEN") -}}
{{- index $required . | join " " -}}
{{- end }}

{{- define "postsale.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/*
A service's resource name: (dict "root" $ "name" "checkout").
*/}}
{{- define "postsale.name" -}}
{{- printf "%s-%s" (include "postsale.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "postsale.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "postsale.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "postsale.selectorLabels" . }}
app.kubernetes.io/part-of: postsale
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/*
A service's values: `defaults` overridden by its own entry, as YAML (read back with fromYaml).
*/}}
{{- define "postsale.values" -}}
{{- $own := index .root.Values.services .name | default dict -}}
{{- mergeOverwrite (deepCopy .root.Values.defaults) (deepCopy $own) | toYaml -}}
{{- end }}

{{- define "postsale.image" -}}
{{- $image := .root.Values.image -}}
{{- printf "%s-%s:%s" $image.repository .name ($image.tag | default .root.Chart.AppVersion) -}}
{{- end }}

{{/*
Where the Secret named in kafka.tls.secretName is mounted.
*/}}
{{- define "postsale.kafkaTlsDir" -}}
/etc/postsale/kafka-tls
{{- end }}

{{/*
The ConfigMap's settings: the broker (connection, security, names on the cluster), the
database pool, telemetry and the public URLs, then the chart-wide `config`, then the service's
own; empty values are left out, so that the service's default applies.
*/}}
{{- define "postsale.config" -}}
{{- $root := .root -}}
{{- $svc := include "postsale.values" . | fromYaml -}}
{{- $kafka := $root.Values.kafka -}}
{{- $config := dict "KAFKA_BOOTSTRAP_SERVERS" $kafka.bootstrapServers "KAFKA_SECURITY_PROTOCOL" $kafka.securityProtocol
      "POSTSALE_KAFKA_PREFIX" $kafka.prefix "POSTSALE_KAFKA_CREATE_TOPICS" (toString $kafka.createTopics)
      "POSTSALE_KAFKA_PARTITIONS" (toString ($kafka.partitions | default "")) -}}
{{- if hasPrefix "SASL_" $kafka.securityProtocol -}}
{{- $_ := set $config "KAFKA_SASL_MECHANISM" $kafka.sasl.mechanism -}}
{{- $_ := set $config "KAFKA_SASL_USERNAME" $kafka.sasl.username -}}
{{- end -}}
{{- if or (eq $kafka.securityProtocol "SSL") (eq $kafka.securityProtocol "SASL_SSL") -}}
{{- $_ := set $config "KAFKA_SSL_CHECK_HOSTNAME" (toString $kafka.tls.checkHostname) -}}
{{- if $kafka.tls.secretName -}}
{{- $dir := include "postsale.kafkaTlsDir" . -}}
{{- if $kafka.tls.caKey -}}
{{- $_ := set $config "KAFKA_SSL_CAFILE" (printf "%s/%s" $dir $kafka.tls.caKey) -}}
{{- end -}}
{{- if $kafka.tls.certificateKey -}}
{{- $_ := set $config "KAFKA_SSL_CERTFILE" (printf "%s/%s" $dir $kafka.tls.certificateKey) -}}
{{- $_ := set $config "KAFKA_SSL_KEYFILE" (printf "%s/%s" $dir (required "kafka.tls.privateKeyKey is required with kafka.tls.certificateKey" $kafka.tls.privateKeyKey)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $pool := $root.Values.database.pool -}}
{{- $_ := set $config "POSTSALE_DATABASE_POOL_SIZE" (toString $pool.size) -}}
{{- $_ := set $config "POSTSALE_DATABASE_MAX_OVERFLOW" (toString $pool.maxOverflow) -}}
{{- $_ := set $config "POSTSALE_DATABASE_POOL_TIMEOUT" (toString $pool.timeoutSeconds) -}}
{{- $_ := set $config "POSTSALE_DATABASE_POOL_RECYCLE" (toString $pool.recycleSeconds) -}}
{{- $telemetry := $root.Values.telemetry -}}
{{- $_ := set $config "OTEL_EXPORTER_OTLP_ENDPOINT" $telemetry.otlp.endpoint -}}
{{- $_ := set $config "OTEL_TRACES_SAMPLER" $telemetry.sampler -}}
{{- $_ := set $config "OTEL_TRACES_SAMPLER_ARG" (toString $telemetry.samplerArg) -}}
{{- $_ := set $config "OTEL_RESOURCE_ATTRIBUTES" $telemetry.resourceAttributes -}}
{{- range $service := include "postsale.serviceNames" . | splitList " " -}}
{{- $_ := set $config (printf "POSTSALE_%s_URL" (upper $service)) (trimSuffix "/" $root.Values.publicUrl) -}}
{{- end -}}
{{- range $key, $value := $root.Values.config -}}
{{- $_ := set $config $key $value -}}
{{- end -}}
{{- range $key, $value := $svc.config -}}
{{- $_ := set $config $key $value -}}
{{- end -}}
{{- range $key, $value := $config -}}
{{- if ne (toString $value) "" }}
{{ $key }}: {{ toString $value | quote }}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
The Secret's data (base64), after checking that every required key is there.
*/}}
{{- define "postsale.secretData" -}}
{{- $svc := include "postsale.values" . | fromYaml -}}
{{- $secrets := $svc.secrets | default dict -}}
{{- range $key := include "postsale.requiredSecrets" .name | splitList " " -}}
{{- $variable := printf "%s_%s" (upper $.name) $key -}}
{{- $value := index $secrets $variable | default "" | toString -}}
{{- if eq $value "" -}}
{{- fail (printf "services.%s.secrets.%s is required (or name a Secret you manage in services.%s.existingSecret)" $.name $variable $.name) -}}
{{- end -}}
{{- if and (ne $key "DATABASE_URL") (lt (len $value) 16) -}}
{{- fail (printf "services.%s.secrets.%s must be at least 16 characters" $.name $variable) -}}
{{- end -}}
{{- end -}}
{{- $all := include "postsale.sharedSecrets" .root | fromYaml | default dict -}}
{{- range $key, $value := $secrets -}}
{{- $_ := set $all $key $value -}}
{{- end -}}
{{- $protocol := .root.Values.kafka.securityProtocol -}}
{{- if and (hasPrefix "SASL_" $protocol) (eq (index $all "KAFKA_SASL_PASSWORD" | default "" | toString) "") -}}
{{- fail (printf "kafka.sasl.password (or services.%s.secrets.KAFKA_SASL_PASSWORD) is required with kafka.securityProtocol %s" $.name $protocol) -}}
{{- end -}}
{{- range $key, $value := $all -}}
{{- if ne (toString $value) "" }}
{{ $key }}: {{ toString $value | b64enc }}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
The secret settings every service shares: the Kafka password and key password, and the OTLP
headers (which often carry an API key). A service's own `secrets` override them.
*/}}
{{- define "postsale.sharedSecrets" -}}
{{- $shared := dict -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}
{{- $_ := set $shared "KAFKA_SASL_PASSWORD" .Values.kafka.sasl.password -}}
{{- end -}}
{{- $_ := set $shared "KAFKA_SSL_KEY_PASSWORD" .Values.kafka.tls.keyPassword -}}
{{- $_ := set $shared "OTEL_EXPORTER_OTLP_HEADERS" .Values.telemetry.otlp.headers -}}
{{- toYaml $shared -}}
{{- end }}

{{/*
The Secret the service reads: the one its values make, or the one named in existingSecret.
*/}}
{{- define "postsale.secretName" -}}
{{- $svc := include "postsale.values" . | fromYaml -}}
{{- $svc.existingSecret | default (include "postsale.name" .) -}}
{{- end }}

{{/*
The migration Job's program: the start-up migration (postsale.runtime.migrations.migrate,
Alembic's `upgrade head` under PostgreSQL's advisory lock) on the service's database, with the
migrations its package ships. The services ship no alembic.ini; this needs none.
*/}}
{{- define "postsale.migrateScript" -}}
import os
from postsale.runtime.db import make_engine
from postsale.runtime.migrations import migrate
from postsale.{{ .name }}.config import MIGRATIONS_DIR
engine = make_engine(os.environ["{{ upper .name }}_DATABASE_URL"])
try:
    migrate(engine, MIGRATIONS_DIR)
finally:
    engine.dispose()
print("{{ .name }}: database at the newest revision")
{{- end }}
