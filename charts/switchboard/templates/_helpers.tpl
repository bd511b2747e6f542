{{/* Names, labels and small pieces shared by the templates. */}}

{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: <release>-switchboard, or the release name when it already says switchboard. */}}
{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "switchboard.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "switchboard.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.gateway.fullname" -}}
{{- printf "%s-gateway" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.control.fullname" -}}
{{- printf "%s-control" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchboard
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "switchboard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the rendered configuration file is mounted. */}}
{{- define "switchboard.configPath" -}}/etc/switchboard/config/switchboard.toml{{- end -}}

{{/*
The gateway's termination grace: the preStop pause, then the drain window, then the pong
timeout (Gateway::drain waits at most drain window + pong timeout for sessions to leave),
then a margin for the close handshakes.
*/}}
{{- define "switchboard.gateway.minReady" -}}
{{- add .Values.gateway.preStopSeconds .Values.gateway.drainWindowSeconds .Values.gateway.drainGapSeconds -}}
{{- end -}}

{{- define "switchboard.gateway.terminationGrace" -}}
{{- add .Values.gateway.preStopSeconds .Values.gateway.drainWindowSeconds .Values.gateway.pongTimeoutSeconds .Values.gateway.terminationMarginSeconds -}}
{{- end -}}

{{/*
The configuration map as TOML. Helm's own toToml writes every number as a float
(`max_connections = 100000.0`), which the binary refuses for integer keys: this writes
whole numbers as integers. Top-level tables become [sections]; deeper maps and lists are
inline. A null value is left out (the key takes its default).
*/}}
{{- define "switchboard.toml" -}}
{{- $root := . -}}
{{- range $key, $value := $root -}}
{{- if and (ne (kindOf $value) "map") (ne (kindOf $value) "invalid") }}
{{ toJson $key }} = {{ include "switchboard.tomlValue" $value }}
{{- end -}}
{{- end -}}
{{- range $key, $value := $root -}}
{{- if eq (kindOf $value) "map" }}

[{{ toJson $key }}]
{{- range $k, $v := $value -}}
{{- if ne (kindOf $v) "invalid" }}
{{ toJson $k }} = {{ include "switchboard.tomlValue" $v }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.tomlValue" -}}
{{- $v := . -}}
{{- $kind := kindOf $v -}}
{{- if eq $kind "string" -}}
{{- toJson $v -}}
{{- else if eq $kind "bool" -}}
{{- $v -}}
{{- else if has $kind (list "float64" "float32" "int" "int64" "int32" "uint64") -}}
{{- if eq (float64 (int64 $v)) (float64 $v) -}}{{- int64 $v -}}{{- else -}}{{- $v -}}{{- end -}}
{{- else if eq $kind "slice" -}}
[{{- range $i, $e := $v -}}{{- if $i -}}, {{ end -}}{{- include "switchboard.tomlValue" $e -}}{{- end -}}]
{{- else if eq $kind "map" -}}
{{- $first := true -}}
{ {{- range $k, $e := $v -}}{{- if ne (kindOf $e) "invalid" -}}{{- if not $first -}},{{- end -}}{{- $first = false }} {{ toJson $k }} = {{ include "switchboard.tomlValue" $e -}}{{- end -}}{{- end }} }
{{- else -}}
{{- fail (printf "config: a value of kind %s cannot be written to TOML" $kind) -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by gateway and control: logs, NATS URLs and user/password from Secrets. */}}
{{- define "switchboard.commonEnv" -}}
- name: SWITCHBOARD_LOG
  value: {{ .Values.logLevel | quote }}
- name: SWITCHBOARD_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- if .Values.nats.existingSecret }}
- name: SWITCHBOARD_NATS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.nats.existingSecret }}
      key: {{ .Values.nats.existingSecretKey }}
{{- end }}
{{- with .Values.nats.credentials.existingSecret }}
- name: SWITCHBOARD_NATS_USER
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.nats.credentials.userKey }}
- name: SWITCHBOARD_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.nats.credentials.passwordKey }}
{{- end }}
{{- end -}}

{{/*
The NATS flags: the URLs (unless they come from a Secret), the CA of the NATS servers and
this node's client certificate, a creds file or an nkey seed, each mounted from a Secret.
The CA goes to the NATS client only (--nats-tls-ca), never to the process (SSL_CERT_FILE
would replace the system roots for every https call, JWKS included).
*/}}
{{- define "switchboard.natsArgs" -}}
{{- $n := .Values.nats -}}
{{- $credentials := compact (list $n.credentials.existingSecret $n.credentials.credsSecret $n.credentials.nkeySecret) -}}
{{- if gt (len $credentials) 1 -}}
{{- fail "nats.credentials: give one NATS credential (existingSecret with a user and password, credsSecret or nkeySecret), not several" -}}
{{- end -}}
{{- if not $n.existingSecret }}
- --nats={{ required "nats.url (or nats.existingSecret) is required: the NATS server URLs" $n.url }}
{{- end }}
{{- if $n.tls.caSecret }}
- --nats-tls-ca=/etc/switchboard/nats-ca/{{ $n.tls.caKey }}
{{- end }}
{{- if $n.tls.clientSecret }}
- --nats-tls-cert=/etc/switchboard/nats-client-tls/{{ $n.tls.certKey }}
- --nats-tls-key=/etc/switchboard/nats-client-tls/{{ $n.tls.keyKey }}
{{- end }}
{{- if $n.credentials.credsSecret }}
- --nats-creds=/etc/switchboard/nats-creds/{{ $n.credentials.credsKey }}
{{- end }}
{{- if $n.credentials.nkeySecret }}
- --nats-nkey-seed-file=/etc/switchboard/nats-nkey/{{ $n.credentials.nkeyKey }}
{{- end }}
{{- end -}}

{{/*
Volumes every server pod mounts: the configuration file, and the NATS CA, client
certificate, creds file and nkey seed when given.
*/}}
{{- define "switchboard.natsSecrets" -}}
{{- $n := .Values.nats -}}
{{- $list := list -}}
{{- if $n.tls.caSecret }}{{ $list = append $list (list "nats-ca" $n.tls.caSecret) }}{{ end -}}
{{- if $n.tls.clientSecret }}{{ $list = append $list (list "nats-client-tls" $n.tls.clientSecret) }}{{ end -}}
{{- if $n.credentials.credsSecret }}{{ $list = append $list (list "nats-creds" $n.credentials.credsSecret) }}{{ end -}}
{{- if $n.credentials.nkeySecret }}{{ $list = append $list (list "nats-nkey" $n.credentials.nkeySecret) }}{{ end -}}
{{- toJson $list -}}
{{- end -}}

{{- define "switchboard.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "switchboard.fullname" . }}
{{- range (include "switchboard.natsSecrets" . | fromJsonArray) }}
- name: {{ index . 0 }}
  secret:
    secretName: {{ index . 1 }}
{{- end }}
{{- end -}}

{{- define "switchboard.commonMounts" -}}
- name: config
  mountPath: /etc/switchboard/config
  readOnly: true
{{- range (include "switchboard.natsSecrets" . | fromJsonArray) }}
- name: {{ index . 0 }}
  mountPath: /etc/switchboard/{{ index . 0 }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Topology spread constraints with this component's selector filled in. */}}
{{- define "switchboard.topologySpread" -}}
{{- $selector := fromYaml (include "switchboard.selectorLabels" (dict "ctx" .ctx "component" .component)) -}}
{{- range .constraints }}
- {{ toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" $selector))) | nindent 2 | trim }}
{{- end }}
{{- end -}}
