{{- define "lms.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lms.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "lms.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lms.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
{{- end -}}

{{/* The workers' endpoints, comma-separated, for --rpc. */}}
{{- define "lms.rpcEndpoints" -}}
{{- $name := printf "%s-rpc" (include "lms.fullname" .) -}}
{{- $endpoints := list -}}
{{- range $i := until (int .Values.rpcWorkers.count) -}}
{{- $endpoints = append $endpoints (printf "%s-%d.%s.%s.svc:%d" $name $i $name $.Release.Namespace (int $.Values.rpcWorkers.port)) -}}
{{- end -}}
{{- join "," $endpoints -}}
{{- end -}}
