// The release controller in one resource group: a Flex Consumption Function App running as one
// user-assigned identity, its storage, the Service Bus topic CI publishes release events to, Key Vault
// for its secrets, Application Insights, alerts on the controller's alerts, and the identity's rights on
// the resource groups of the web apps it releases to. See infra/README.md.
//
//   az deployment group create -g <resource group> -f infra/main.bicep -p infra/main.parameters.json

targetScope = 'resourceGroup'

@description('Short name the resource names are built from: lowercase letters, digits and hyphens.')
@minLength(3)
@maxLength(16)
param baseName string

@description('Region of every resource (one that offers the Flex Consumption plan).')
param location string = resourceGroup().location

@description('Tags put on every resource.')
param tags object = {}

// ---- Who may call the API -------------------------------------------------------------------------

@description('Client (application) id of the Entra ID app registration that protects the API (see infra/README.md).')
param entraClientId string

@description('Application ID URI of that registration (default api://<client id>).')
param entraAppIdUri string = ''

@description('Token issuer App Service authentication accepts (default: this tenant\'s v2.0 issuer).')
param entraOpenIdIssuer string = ''

// ---- What the controller may release to -------------------------------------------------------------

@description('Resource groups of the target web apps: [{"subscriptionId": "...", "resourceGroup": "..."}]. The identity gets the release-controller role on each.')
param targetResourceGroups array

@description('Name (GUID) of the custom role created from infra/release-controller-role.json (az role definition create).')
param releaseControllerRoleId string

@description('Also give the identity Monitoring Reader on the target resource groups. Not needed with the custom role, which allows Microsoft.Insights/metrics/read.')
param assignMonitoringReader bool = false

// ---- Other principals ---------------------------------------------------------------------------------

@description('Object id of the CI identity that publishes release events (gets Azure Service Bus Data Sender on the topic); empty for none.')
param ciPrincipalId string = ''

@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param ciPrincipalType string = 'ServicePrincipal'

@description('Object id of the person or group who writes the signing keys and webhook secrets (gets Key Vault Secrets Officer); empty for none.')
param secretsOfficerPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param secretsOfficerPrincipalType string = 'Group'

// ---- Secrets (values are written to Key Vault by a person, never by the template) -----------------------

@description('Key ids of the HMAC keys events may be signed with (letters, digits, underscores): each becomes the app setting RELEASE_SIGNING_KEY_<id>, a Key Vault reference to the secret release-signing-key-<id>.')
param signingKeyIds array = []

@description('Webhook gate secret names as the policy\'s secretSetting ends (WEBHOOK_SECRET_<name>): each becomes a Key Vault reference to the secret webhook-secret-<name>.')
param webhookSecretNames array = []

@description('Notification sinks: [{"name": "OPS", "kind": "teams", "sites": "contoso-web", "events": "rolledBack,failed"}] (sites and events optional: all). Each becomes NOTIFY_<NAME>_* settings; its URL is the Key Vault secret notify-<name>-url (and a cloudevents sink\'s signing key notify-<name>-secret).')
param notificationSinks array = []

// ---- Controller settings (see the Configuration section of the README) -----------------------------------

param releaseEventsTopic string = 'release-events'
param releaseEventsSubscription string = 'controller'

@description('Prefix of the release store\'s table names (letters and digits); empty for none.')
param releaseStoreTablePrefix string = ''

@description('NCRONTAB (6 fields) of the reconcile timer.')
param reconcileSchedule string = '*/30 * * * * *'

@minValue(1)
@maxValue(3600)
param reconcileBudgetSeconds int = 240

@minValue(1)
@maxValue(64)
param reconcileConcurrency int = 4

@description('Name of the work queue the timer and every save put due releases on (its poison queue is <name>-poison).')
param workQueueName string = 'release-work'

@description('Seconds a due release may wait for its own scheduled work message before the timer sends another.')
@minValue(5)
@maxValue(3600)
param dispatchGraceSeconds int = 60

@allowed([
  'appService'
  'memory'
])
param slotPlatform string = 'appService'

@minValue(0)
@maxValue(300)
param armPollingInterval int = 30

@minValue(0)
@maxValue(10)
param armRetryTotal int = 3

@minValue(0)
@maxValue(1800)
param azureMonitorDelaySeconds int = 180

@description('The release policy file, relative to the app\'s root.')
param releasePolicyPath string = 'release-policy.yaml'

param authRoleClaim string = 'roles'

@description('App role values to controller roles, "Value=role,..."; empty when the app roles are named after the controller roles.')
param authRoleMap string = ''

// ---- Platform ------------------------------------------------------------------------------------------

@description('Most instances the Flex Consumption plan scales out to.')
@maxValue(1000)
param maximumInstanceCount int = 100

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Deliveries of a release event before Service Bus dead-letters it.')
@minValue(1)
@maxValue(100)
param maxDeliveryCount int = 10

@description('How long the topic remembers message ids (= release ids) for duplicate detection.')
param duplicateDetectionWindow string = 'PT1H'

@description('How long an undelivered release event lives before it expires to the dead-letter queue.')
param messageTimeToLive string = 'P14D'

@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Application Insights accepts telemetry from Entra ID identities only.')
param appInsightsDisableLocalAuth bool = true

@description('Key Vault purge protection (cannot be turned off once on).')
param keyVaultPurgeProtection bool = true

// ---- Alerts ----------------------------------------------------------------------------------------------

@description('E-mail addresses notified when the controller raises an alert.')
param alertEmailAddresses array = []

@description('Resource ids of existing action groups notified as well.')
param alertActionGroupIds array = []

// ---- Names -----------------------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id, baseName)
var compactName = toLower(replace(baseName, '-', ''))
var names = {
  identity: 'id-${baseName}'
  workspace: 'log-${baseName}'
  appInsights: 'appi-${baseName}'
  storage: take('st${compactName}${suffix}', 24)
  serviceBus: 'sb-${baseName}-${suffix}'
  keyVault: take('kv-${take(compactName, 8)}-${suffix}', 24)
  plan: 'plan-${baseName}'
  site: 'func-${baseName}-${suffix}'
}
var deploymentContainerName = 'app-package'
var appIdUri = empty(entraAppIdUri) ? 'api://${entraClientId}' : entraAppIdUri
var openIdIssuer = empty(entraOpenIdIssuer) ? '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0' : entraOpenIdIssuer

// ---- Resources -------------------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: '${baseName}-monitoring'
  params: {
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
    disableLocalAuth: appInsightsDisableLocalAuth
    publisherPrincipalId: identity.properties.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: '${baseName}-storage'
  params: {
    name: names.storage
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    principalId: identity.properties.principalId
    workQueueName: workQueueName
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: '${baseName}-servicebus'
  params: {
    name: names.serviceBus
    location: location
    tags: tags
    topicName: releaseEventsTopic
    subscriptionName: releaseEventsSubscription
    maxDeliveryCount: maxDeliveryCount
    duplicateDetectionWindow: duplicateDetectionWindow
    messageTimeToLive: messageTimeToLive
    receiverPrincipalId: identity.properties.principalId
    senderPrincipalId: ciPrincipalId
    senderPrincipalType: ciPrincipalType
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: '${baseName}-keyvault'
  params: {
    name: names.keyVault
    location: location
    tags: tags
    enablePurgeProtection: keyVaultPurgeProtection
    readerPrincipalId: identity.properties.principalId
    secretsOfficerPrincipalId: secretsOfficerPrincipalId
    secretsOfficerPrincipalType: secretsOfficerPrincipalType
  }
}

// Takes its inputs from the modules above, so it starts once their role assignments exist.
module functionApp 'modules/functionapp.bicep' = {
  name: '${baseName}-functionapp'
  params: {
    location: location
    tags: tags
    planName: names.plan
    siteName: names.site
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    releaseStoreEndpoint: storage.outputs.tableEndpoint
    workQueueServiceUri: storage.outputs.queueEndpoint
    workQueueName: storage.outputs.workQueueName
    dispatchGraceSeconds: dispatchGraceSeconds
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    releaseEventsTopic: serviceBus.outputs.topicName
    releaseEventsSubscription: serviceBus.outputs.subscriptionName
    appInsightsConnectionString: monitoring.outputs.connectionString
    keyVaultName: keyVault.outputs.name
    signingKeyIds: signingKeyIds
    webhookSecretNames: webhookSecretNames
    notificationSinks: notificationSinks
    releaseStoreTablePrefix: releaseStoreTablePrefix
    reconcileSchedule: reconcileSchedule
    reconcileBudgetSeconds: reconcileBudgetSeconds
    reconcileConcurrency: reconcileConcurrency
    slotPlatform: slotPlatform
    armPollingInterval: armPollingInterval
    armRetryTotal: armRetryTotal
    azureMonitorDelaySeconds: azureMonitorDelaySeconds
    releasePolicyPath: releasePolicyPath
    authRoleClaim: authRoleClaim
    authRoleMap: authRoleMap
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    entraClientId: entraClientId
    entraAppIdUri: appIdUri
    entraOpenIdIssuer: openIdIssuer
  }
}

// The identity's rights where the target web apps live, one deployment per resource group (possibly in
// other subscriptions).
module targetAccess 'modules/target-access.bicep' = [
  for (target, i) in targetResourceGroups: {
    name: '${baseName}-target-${i}'
    scope: resourceGroup(target.subscriptionId, target.resourceGroup)
    params: {
      principalId: identity.properties.principalId
      roleDefinitionId: releaseControllerRoleId
      assignMonitoringReader: assignMonitoringReader
    }
  }
]

module alerts 'modules/alerts.bicep' = {
  name: '${baseName}-alerts'
  params: {
    location: location
    tags: tags
    baseName: baseName
    appInsightsId: monitoring.outputs.appInsightsId
    emailAddresses: alertEmailAddresses
    actionGroupIds: alertActionGroupIds
  }
}

output functionAppName string = functionApp.outputs.name
output functionAppUrl string = 'https://${functionApp.outputs.defaultHostName}'
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
output serviceBusNamespace string = serviceBus.outputs.namespaceName
output serviceBusFullyQualifiedNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output keyVaultName string = keyVault.outputs.name
output keyVaultSecretNames array = functionApp.outputs.keyVaultSecretNames
output storageAccountName string = storage.outputs.name
output appInsightsName string = monitoring.outputs.appInsightsName
output appSettingNames array = functionApp.outputs.appSettingNames
