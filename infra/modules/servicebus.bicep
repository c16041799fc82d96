// Service Bus: the topic CI publishes release events to and the controller's session subscription.
// Local (SAS) authentication is off: the controller receives and CI sends with Entra ID identities.

@description('Name of the Service Bus namespace (6 to 50 letters, digits and hyphens), unique in Azure.')
@minLength(6)
@maxLength(50)
param name string

param location string
param tags object

@description('Topic CI publishes release events to.')
param topicName string

@description('The controller\'s subscription on the topic.')
param subscriptionName string

@description('Deliveries of one message before Service Bus dead-letters it.')
@minValue(1)
param maxDeliveryCount int

@description('How long the topic remembers message ids for duplicate detection (ISO 8601 duration).')
param duplicateDetectionWindow string

@description('How long an undelivered event lives before it expires to the dead-letter queue (ISO 8601 duration).')
param messageTimeToLive string

@description('Principal id of the controller identity (receives on the subscription).')
param receiverPrincipalId string

@description('Principal id of the CI identity that publishes events (sends to the topic); empty for none.')
param senderPrincipalId string

@description('Kind of the CI principal.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param senderPrincipalType string

var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'

resource serviceBusNamespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  // Topics need the Standard tier or above.
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: serviceBusNamespace
  name: topicName
  properties: {
    // Message id = release id: a build published twice is stored once. Fixed at creation.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    defaultMessageTimeToLive: messageTimeToLive
    supportOrdering: true
    enableBatchedOperations: true
  }
}

resource controllerSubscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = {
  parent: topic
  name: subscriptionName
  properties: {
    // Session id = site: one site's events are handled in order. Fixed at creation.
    requiresSession: true
    maxDeliveryCount: maxDeliveryCount
    deadLetteringOnMessageExpiration: true
    deadLetteringOnFilterEvaluationExceptions: true
    defaultMessageTimeToLive: messageTimeToLive
    // The Functions host renews the session lock (host.json maxAutoLockRenewalDuration).
    lockDuration: 'PT1M'
  }
}

// The Functions docs ask for a scope that covers the subscription itself when triggering from a topic.
resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(controllerSubscription.id, receiverPrincipalId, serviceBusDataReceiver)
  scope: controllerSubscription
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
    principalId: receiverPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Release controller: receive release events from its subscription.'
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(senderPrincipalId)) {
  name: guid(topic.id, senderPrincipalId, serviceBusDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: senderPrincipalId
    principalType: senderPrincipalType
    description: 'CI: publish release events to the release controller\'s topic.'
  }
}

output namespaceName string = serviceBusNamespace.name
// serviceBusEndpoint is https://<namespace>.servicebus.<cloud suffix>:443/ in every cloud.
output fullyQualifiedNamespace string = split(replace(serviceBusNamespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
output topicName string = topic.name
output subscriptionName string = controllerSubscription.name
