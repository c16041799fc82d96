// The controller's storage account: the Functions host's own storage (timer leases, keys, diagnostic
// events), the Flex Consumption deployment container, the release store's tables (the app creates its
// tables itself, so none are declared here), and the work queue that spreads reconciles over instances
// with its poison queue. Shared keys are off: everything goes through the controller's managed identity.

@description('Name of the storage account: 3 to 24 lowercase letters and digits, unique in Azure.')
@minLength(3)
@maxLength(24)
param name string

param location string
param tags object

@description('Blob container the Flex Consumption plan deploys the app package from.')
param deploymentContainerName string

@description('Principal id of the controller identity.')
param principalId string

@description('Name of the work queue (one message per due release); its poison queue is <name>-poison.')
param workQueueName string

// Storage Blob Data Owner: the Functions host's minimum for identity-based AzureWebJobsStorage (blobs and
// the containers it creates; timer-trigger leases), and the Flex deployment container.
// Storage Table Data Contributor: the release store's tables, and the host's diagnostic events.
// Storage Queue Data Contributor: the work queue (send, receive, delete) and its poison queue.
var dataRoles = [
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource workQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: workQueueName
}

// Where the queue trigger moves a message that failed maxDequeueCount times (host.json).
resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${workQueueName}-poison'
}

resource dataAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in dataRoles: {
    name: guid(account.id, principalId, roleId)
    scope: account
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'Release controller: host storage, deployment package, release store and work queue.'
    }
  }
]

var tableEndpoint = account.properties.primaryEndpoints.table

output name string = account.name
output id string = account.id
// The table endpoint without its trailing slash, as RELEASE_STORE_ENDPOINT is documented.
output tableEndpoint string = endsWith(tableEndpoint, '/') ? substring(tableEndpoint, 0, length(tableEndpoint) - 1) : tableEndpoint
output queueEndpoint string = account.properties.primaryEndpoints.queue
output workQueueName string = workQueue.name
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainer.name}'
