// The controller itself: a Python 3.11 Function App on the Flex Consumption plan, running as the
// user-assigned identity for everything (host storage, deployment package, Service Bus, Table Storage,
// Key Vault references, Application Insights, ARM), behind App Service authentication.

param location string
param tags object

@description('Name of the Flex Consumption plan.')
param planName string

@description('Name of the Function App (the host name <name>.azurewebsites.net).')
param siteName string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Name of the storage account of the Functions host.')
param storageAccountName string

@description('Table endpoint of the release store (https://<account>.table.core.windows.net).')
param releaseStoreEndpoint string

@description('Queue endpoint of the storage account holding the work queue (https://<account>.queue.core.windows.net/).')
param workQueueServiceUri string

@description('Name of the work queue.')
param workQueueName string

@description('Seconds a due release may wait for its own scheduled message before the timer sends another.')
param dispatchGraceSeconds int

@description('URL of the blob container the plan deploys the app package from.')
param deploymentContainerUrl string

@description('Service Bus namespace host name (<namespace>.servicebus.windows.net).')
param serviceBusFullyQualifiedNamespace string

param releaseEventsTopic string
param releaseEventsSubscription string

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Name of the Key Vault holding the signing keys and webhook secrets.')
param keyVaultName string

@description('Key ids of the HMAC keys events may be signed with; each becomes RELEASE_SIGNING_KEY_<id>.')
param signingKeyIds array

@description('Names of the webhook gate secrets; each becomes WEBHOOK_SECRET_<name>.')
param webhookSecretNames array

@description('Notification sinks: [{name, kind (teams, slack, cloudevents), sites?, events?}]; each URL (and a cloudevents sink\'s signing key) is a Key Vault secret.')
param notificationSinks array

param releaseStoreTablePrefix string
param reconcileSchedule string
param reconcileBudgetSeconds int
param reconcileConcurrency int
param slotPlatform string
param armPollingInterval int
param armRetryTotal int
param azureMonitorDelaySeconds int
param releasePolicyPath string
param authRoleClaim string
param authRoleMap string

@description('Most instances the plan scales out to.')
param maximumInstanceCount int

@description('Memory of each instance, in MB.')
param instanceMemoryMB int

@description('Client id of the Entra ID app registration that protects the API.')
param entraClientId string

@description('Application ID URI of that registration; tokens for it carry this audience.')
param entraAppIdUri string

@description('Issuer of the tokens App Service authentication accepts.')
param entraOpenIdIssuer string

// Key Vault secret names allow letters, digits and hyphens: RELEASE_SIGNING_KEY_ci2026 reads the
// secret release-signing-key-ci2026, WEBHOOK_SECRET_SCAN reads webhook-secret-scan.
var signingKeySecrets = map(signingKeyIds, id => {
  setting: 'RELEASE_SIGNING_KEY_${id}'
  secret: 'release-signing-key-${toLower(replace(id, '_', '-'))}'
})
var webhookSecrets = map(webhookSecretNames, gate => {
  setting: 'WEBHOOK_SECRET_${gate}'
  secret: 'webhook-secret-${toLower(replace(gate, '_', '-'))}'
})
// NOTIFY_<NAME>_URL reads the secret notify-<name>-url (a webhook's URL is its credential), and a
// cloudevents sink's NOTIFY_<NAME>_SECRET reads notify-<name>-secret.
var notifySecrets = flatten(map(notificationSinks, n => concat(
  [{ setting: 'NOTIFY_${toUpper(n.name)}_URL', secret: 'notify-${toLower(n.name)}-url' }],
  n.kind == 'cloudevents' ? [{ setting: 'NOTIFY_${toUpper(n.name)}_SECRET', secret: 'notify-${toLower(n.name)}-secret' }] : []
)))
var notifySettings = toObject(flatten(map(notificationSinks, n => [
  { name: 'NOTIFY_${toUpper(n.name)}_KIND', value: n.kind }
  { name: 'NOTIFY_${toUpper(n.name)}_SITES', value: n.?sites ?? '' }
  { name: 'NOTIFY_${toUpper(n.name)}_EVENTS', value: n.?events ?? '' }
])), e => e.name, e => e.value)
var secretSettings = toObject(concat(signingKeySecrets, webhookSecrets, notifySecrets), s => s.setting, s => '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${s.secret})')

// Every setting the app, its bindings and the Functions host read in Azure (tests/infra checks the list
// against the code). Not here on purpose: FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION (the
// Flex plan takes the runtime from functionAppConfig), WEBSITE_AUTH_ENABLED (set by the platform when
// authentication is on), and the local-development settings (connection strings, CA bundles, key-only auth).
var appSettings = {
  // Functions host storage, identity-based.
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // The Service Bus trigger's connection "ServiceBusConnection", identity-based.
  ServiceBusConnection__fullyQualifiedNamespace: serviceBusFullyQualifiedNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identityClientId
  // Telemetry, sent with the identity (the component refuses instrumentation-key-only ingestion).
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  // DefaultAzureCredential (ARM, Table Storage) picks the user-assigned identity by its client id.
  AZURE_CLIENT_ID: identityClientId
  // The work queue: the queue trigger's connection "WorkQueue", identity-based (the app sends with it too).
  WorkQueue__queueServiceUri: workQueueServiceUri
  WorkQueue__credential: 'managedidentity'
  WorkQueue__clientId: identityClientId
  WORK_QUEUE_NAME: workQueueName
  DISPATCH_GRACE_SECONDS: string(dispatchGraceSeconds)
  // The release store.
  RELEASE_STORE_ENDPOINT: releaseStoreEndpoint
  RELEASE_STORE_TABLE_PREFIX: releaseStoreTablePrefix
  // Trigger bindings (%NAME% in functions/).
  RELEASE_EVENTS_TOPIC: releaseEventsTopic
  RELEASE_EVENTS_SUBSCRIPTION: releaseEventsSubscription
  RECONCILE_SCHEDULE: reconcileSchedule
  // The reconciler.
  RECONCILE_BUDGET_SECONDS: string(reconcileBudgetSeconds)
  RECONCILE_CONCURRENCY: string(reconcileConcurrency)
  SLOT_PLATFORM: slotPlatform
  // Azure Resource Manager of the cloud this is deployed to.
  ARM_ENDPOINT: environment().resourceManager
  ARM_SCOPE: '${environment().resourceManager}.default'
  ARM_POLLING_INTERVAL: string(armPollingInterval)
  ARM_RETRY_TOTAL: string(armRetryTotal)
  AZURE_MONITOR_DELAY_SECONDS: string(azureMonitorDelaySeconds)
  // Authority.
  RELEASE_POLICY_PATH: releasePolicyPath
  AUTH_ROLE_CLAIM: authRoleClaim
  AUTH_ROLE_MAP: authRoleMap
  // Pinned off: a function key alone never acts in Azure.
  AUTH_KEY_ONLY: 'false'
  // The key that signs the dashboard's forms, shared by every instance.
  DASHBOARD_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=dashboard-secret)'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: siteName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references are resolved with the user-assigned identity, not a system-assigned one.
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// A PUT of the whole set: settings added by hand are removed on the next deployment.
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(appSettings, secretSettings, notifySettings)
}

// App Service authentication with the Microsoft identity provider: every request but the liveness probe
// needs an Entra ID token for the app registration, and an unauthenticated one gets 401 (an API, so no
// login redirect). The platform then passes the caller's roles in X-MS-CLIENT-PRINCIPAL and sets
// WEBSITE_AUTH_ENABLED, the only case in which the app trusts that header.
resource authentication 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'authsettingsV2'
  // One configuration write at a time on the site.
  dependsOn: [
    settings
  ]
  properties: {
    platform: {
      enabled: true
      runtimeVersion: '~1'
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/healthz'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: entraClientId
          openIdIssuer: entraOpenIdIssuer
        }
        validation: {
          // The client id itself is always an accepted audience (v2.0 tokens); the Application ID URI is
          // the audience of v1.0 tokens.
          allowedAudiences: [
            entraAppIdUri
          ]
        }
      }
    }
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output appSettingNames array = map(items(union(appSettings, secretSettings, notifySettings)), setting => setting.key)
output keyVaultSecretNames array = concat(map(concat(signingKeySecrets, webhookSecrets, notifySecrets), s => s.secret), ['dashboard-secret'])
