import { describeGrowthOperator } from '@sprout/testkit'
import net2net from './index.js'

describeGrowthOperator(net2net)
